# The paper: LaTeX sources from paper/ plus the generated tables, figures and macros, built with
# latexmk in a build folder; the PDF is moved into place only when the build succeeded.
PAPER_PDF = f"{R}/paper/paper.pdf"
PAPER_BUILD = f"{R}/paper/build"
PAPER_INPUTS = REPORT_OUTPUTS + OOD_OUTPUTS + TIMING_OUTPUTS
PAPER_MAIN = "real" if REAL else "main"  # the real profile's paper: paper/real.tex
STALE_NOTE = f"{R}/STALE.txt"


rule paper:
    input:
        tex=f"paper/{PAPER_MAIN}.tex",
        generated=PAPER_INPUTS,
    output:
        report(PAPER_PDF, caption="../report/paper.rst", category="Paper"),
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/paper.log",
    benchmark:
        bench("paper")
    params:
        build=PAPER_BUILD,
        title=config.get("paper", {}).get("title", ""),
        main=PAPER_MAIN,
    shell:
        r"""
        (set -e
         rm -rf {params.build} && mkdir -p {params.build}/generated
         cp paper/*.tex {params.build}/
         cp {input.generated} {params.build}/generated/
         printf '\\newcommand{{\\PaperTitle}}{{%s}}\n' "{params.title}" > {params.build}/generated/title.tex
         cd {params.build}
         latexmk -pdf -interaction=nonstopmode -halt-on-error {params.main}.tex
         mv {params.main}.pdf ../paper.pdf.tmp
         mv ../paper.pdf.tmp ../paper.pdf
        ) > {log} 2>&1
        """
