# Tables (CSV + booktabs LaTeX), figures (PDF + PNG) and the macros the paper's text uses.
REPORT_OUTPUTS = [
    f"{R}/tables/reproduce.csv",
    f"{R}/tables/reproduce.tex",
    f"{R}/figures/top1_vs_gflops.pdf",
    f"{R}/figures/top1_vs_gflops.png",
    f"{R}/tables/macros.tex",
]


rule report_reproduce:
    input:
        metrics=[run_output(*BASELINE)] + group_metrics("reproduce"),
        weights=WEIGHTS,
    output:
        REPORT_OUTPUTS,
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/report_reproduce.log",
    params:
        profile=config["profile"],
        model=config["model"],
        data=config["data"],
        train=config.get("train"),
        task=config.get("task"),
    script:
        "../workflow/scripts/report_reproduce.py"
