# The paper: LaTeX sources from paper/ plus the generated tables, figures and macros, built with
# latexmk in a build folder; the PDF is moved into place only when the build succeeded.
PAPER_PDF = f"{R}/paper/paper.pdf"
PAPER_BUILD = f"{R}/paper/build"
FINDINGS = f"{R}/tables/findings.tex"
PAPER_INPUTS = REPORT_OUTPUTS + OOD_OUTPUTS + TIMING_OUTPUTS + ([] if REAL else [FINDINGS])  # real: paper/real.tex


# The paper's findings in words (tokred.report.findings), from the tables' CSVs.
rule report_findings:
    input:
        **{name: table(name)[0] for name in ["reproduce"] + [g for g in ("early", "full") if g in GROUPS]
           + (["replication"] if REPLICATE else [])},
    output:
        FINDINGS,
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/report_findings.log",
    params:
        code=code("report_findings.py"),
    script:
        "../workflow/scripts/report_findings.py"


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
