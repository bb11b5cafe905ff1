# One job per run: patch the model as the run says, compute logits, GFLOPs and metrics against
# the baseline's logits on the same images.
rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        metrics=run_output("{group}", "{run}"),
        logits=run_output("{group}", "{run}", "logits.pt"),
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/runs/{{group}}/{{run}}.log",
    params:
        run=lambda wc: RUNS[(wc.group, wc.run)],
        cfg={k: config[k] for k in ("seed", "model", "data", "task", "train", "eval") if k in config},
    threads: config["eval"].get("threads", 2)
    resources:
        mem_mb=3000,
    script:
        "../workflow/scripts/evaluate.py"
