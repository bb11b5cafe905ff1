# OOD robustness: one job per condition (clean, corruption x severity, ImageNet-V2/R/C when their
# paths are set), evaluating the unreduced model, ToMe and each matched method on the same images.
rule evaluate_ood:
    input:
        unpack(ood_schedules),
        weights=WEIGHTS,
        eval_set=EVAL_SET,
    output:
        [ood_output("{condition}", r["name"]) for r in OOD_RUNS],
        [ood_output("{condition}", r["name"], "logits.pt") for r in OOD_RUNS],
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/ood/{{condition}}.log",
    benchmark:
        bench("evaluate_ood/{condition}")
    params:
        code=code("evaluate_ood.py"),
        cond=lambda wc: OOD_CONDITIONS[wc.condition],
        runs=OOD_RUNS,
        cfg={**{k: config[k] for k in ("seed", "model", "methods", "data", "task", "train", "eval") if k in config},
             "experiments": {"ood": config["experiments"].get("ood")}},
        torch_threads=EVAL_THREADS,
    threads: scaled_threads(EVAL_THREADS)
    resources:
        mem_mb=4000,
        **EVAL_RESOURCES,
    wildcard_constraints:
        condition="|".join(OOD_CONDITIONS) or "none",
    script:
        "../workflow/scripts/evaluate_ood.py"


rule report_ood:
    input:
        metrics=[ood_output(c, r["name"]) for c in OOD_CONDITIONS for r in OOD_RUNS],
    output:
        table=table("ood", out=True),
        macros=f"{R}/tables/ood_macros.tex",
        vs_tome=table("ood_vs_tome", out=True),
        variants=table("ood_variants", out=True) if OOD_VARIANT_RUNS else [],
        figures=[p for fam in OOD_FAMILIES for p in figure(f"ood_{fam}", out=True)],
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/report_ood.log",
    params:
        code=code("report_ood.py"),
        families=OOD_FAMILIES,
        pairs=preflight.ood_comparisons(OOD_RUNS),
        variant_runs=OOD_VARIANT_RUNS,
        n_boot=config["eval"].get("bootstrap", 2000),
        seed=config["seed"],
    script:
        "../workflow/scripts/report_ood.py"
