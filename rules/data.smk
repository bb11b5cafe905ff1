# The evaluation set, decoded and preprocessed once (uint8; normalised at evaluation time).
rule eval_set:
    output:
        EVAL_SET,
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/eval_set.log",
    benchmark:
        bench("eval_set")
    params:
        code=code("build_eval_set.py"),
        cfg={**{k: config[k] for k in ("model", "data", "task") if k in config}, **({"results_dir": R} if REAL else {})},
    threads: 2
    resources:
        mem_mb=lambda wc: 2000 if EMBEDDED else 12000,
    script:
        "../workflow/scripts/build_eval_set.py"
