# Weights: the embedded profile trains its model; the paper profile downloads once from the hub.
if EMBEDDED:

    rule train_embedded:
        output:
            WEIGHTS,
        conda:
            "../environment.yml"
        log:
            f"{R}/logs/train_embedded.log",
        benchmark:
            bench("train_embedded")
        params:
            code=code("train_embedded.py"),
            cfg={k: config[k] for k in ("seed", "model", "task", "train")},
        threads: 8
        resources:
            mem_mb=4000,
        script:
            "../workflow/scripts/train_embedded.py"

else:

    rule download_weights:
        output:
            weights=WEIGHTS,
            sidecar=f"{WEIGHTS}.json",
        conda:
            "../environment.yml"
        log:
            f"{R}/logs/download_weights.log",
        benchmark:
            bench("download_weights")
        params:
            code=code("download_weights.py"),
            cfg={"model": config["model"]},
        localrule: True
        retries: 2
        script:
            "../workflow/scripts/download_weights.py"
