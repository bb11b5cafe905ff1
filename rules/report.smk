# Tables (CSV + booktabs LaTeX), figures (PDF + PNG) and the macros the paper's text uses.
# Groups missing from the config produce nothing, and the paper leaves their sections out.
# (GROUPS, PAIRS, figure(), table(), with_tome_pairs() live in common.smk.)
ABLATION_TOME = f"tome_r{config['experiments'].get('ablations', {}).get('r', 0)}"
# The early regime and the selector/schedule split (docs/method.md §5; tokred.report.regime).
HEADLINE = (config["experiments"].get("early") or {}).get("headline")
SELECTOR = preflight.selector_pairs(RUNS)
FULL_SCHEDULES = sorted({schedule_file(s.get("schedule_of", s["method"]), s["match"])
                         for (g, _), s in RUNS.items() if g == "full" and "match" in s})
REPORT_OUTPUTS = (
    table("reproduce") + figure("top1_vs_gflops") + figure("pareto") + [f"{R}/tables/macros.tex", f"{R}/tables/runs.tex"]
    + figure("merges")
    + (table("early") + figure("early_drop") + figure("rsweep") if "early" in GROUPS else [])
    + (table("full") if "full" in GROUPS else [])
    + (table("ablations") + figure("ablations") if "ablations" in GROUPS else [])
    + (table("ablations_early") if "ablations_early" in GROUPS else [])
    + (table("headline") if HEADLINE else [])
    + (table("schedules") + (table("selector") if SELECTOR else []) if "full" in GROUPS else [])
)
# The real profile has neither labels nor a classifier: its report is the head-free fidelity of every
# group (tokred.report.fidelity) and the merge figure on its photos, in its own paper (paper/real.tex).
FIDELITY_GROUPS = ["reproduce"] + GROUPS
FIDELITY_OUTPUTS = ([p for g in FIDELITY_GROUPS for p in table(f"fidelity_{g}")] + figure("fidelity_blocks")
                    + [f"{R}/tables/fidelity_macros.tex"])
if REAL:
    REPORT_OUTPUTS = FIDELITY_OUTPUTS + figure("merges")
else:  # labelled profiles show the same head-free fidelity beside Top-1 (an appendix of paper/main.tex)
    REPORT_OUTPUTS = REPORT_OUTPUTS + FIDELITY_OUTPUTS


rule report_fidelity:
    input:
        metrics=[run_output(g, r) for (g, r) in RUNS],
        weights=WEIGHTS,
        eval_set=EVAL_SET,
    output:
        [p for g in FIDELITY_GROUPS for p in table(f"fidelity_{g}", out=True)]
        + figure("fidelity_blocks", out=True)
        + [f"{R}/tables/fidelity_macros.tex"],
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/report_fidelity.log",
    params:
        code=code("report_fidelity.py"),
        groups=FIDELITY_GROUPS,
        pairs=PAIRS,
        real=REAL,
    script:
        "../workflow/scripts/report_fidelity.py"


rule report_reproduce:
    input:
        metrics=[run_output(*BASELINE)] + group_metrics("reproduce"),
    output:
        table("reproduce", out=True) + figure("top1_vs_gflops", out=True),
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/report_reproduce.log",
    params:
        code=code("report_reproduce.py"),
    script:
        "../workflow/scripts/report_reproduce.py"


rule report_group:
    input:
        unpack(lambda wc: with_tome_pairs(wc.group)),
        eval_set=EVAL_SET,
    output:
        table("{group}", out=True),
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/report_{{group}}.log",
    params:
        code=code("report_group.py"),
        pairs=PAIRS,
    wildcard_constraints:
        group="early|full|ablations|ablations_early",
    script:
        "../workflow/scripts/report_group.py"


rule report_headline:
    input:
        metrics=group_metrics("early"),
        base_logits=run_output(*BASELINE, "logits.pt"),
        eval_set=EVAL_SET,
    output:
        table("headline", out=True),
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/report_headline.log",
    params:
        code=code("report_headline.py"),
        method=(HEADLINE or {}).get("method"),
        layers=(HEADLINE or {}).get("layers"),
        n_boot=config["eval"].get("bootstrap", 2000),
        seed=config["seed"],
    script:
        "../workflow/scripts/report_headline.py"


# The listed comparisons on every trained model (experiments.replicate; replicate_model in common.smk).
REPLICATE_MODELS = ([replicate_model()] + [replicate_model(s) for s in config["experiments"]["replicate"]["train_seeds"]]
                    if REPLICATE else [])
REPLICATE_OUTPUTS = table("replication") + [f"{R}/tables/replication_macros.tex"] if REPLICATE else []
REPORT_OUTPUTS = REPORT_OUTPUTS + REPLICATE_OUTPUTS


rule report_replication:
    input:
        metrics=[p for m in REPLICATE_MODELS for p in m["runs"].values()],
        logits=[p.replace("metrics.json", "logits.pt") for m in REPLICATE_MODELS for p in m["runs"].values()],
        eval_set=EVAL_SET,
    output:
        table("replication", out=True) + [f"{R}/tables/replication_macros.tex"],
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/report_replication.log",
    params:
        code=code("report_replication.py"),
        models=REPLICATE_MODELS,
        pairs=REPLICATE,
    script:
        "../workflow/scripts/report_replication.py"


rule report_schedules:
    input:
        metrics=group_metrics("full") + [run_output("reproduce", f"tome_r{t}") for t in sorted(
            {s["r"] for (g, _), s in RUNS.items() if g == "full" and s["method"] != "tome" and "r" in s}
            | {s["match"]["tome_r"] for (g, _), s in RUNS.items() if g == "full" and "match" in s})],
        schedules=FULL_SCHEDULES,
        eval_set=EVAL_SET,
    output:
        table("schedules", out=True) + (table("selector", out=True) if SELECTOR else []),
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/report_schedules.log",
    params:
        code=code("report_schedules.py"),
        pairs=SELECTOR,
    script:
        "../workflow/scripts/report_schedules.py"


rule report_figures_early:
    input:
        table=table("early")[0],
        metrics=group_metrics("early") + group_metrics("reproduce"),
    output:
        figure("early_drop", out=True) + figure("rsweep", out=True),
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/report_figures_early.log",
    params:
        code=code("report_figures_early.py"),
    script:
        "../workflow/scripts/report_figures_early.py"


rule report_figures_ablations:
    input:
        table=table("ablations")[0],
        reproduce=run_output("reproduce", ABLATION_TOME),
    output:
        figure("ablations", out=True),
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/report_figures_ablations.log",
    params:
        code=code("report_figures_ablations.py"),
        tome_run=ABLATION_TOME,
    script:
        "../workflow/scripts/report_figures_ablations.py"


rule report_overview:
    input:
        metrics=[run_output(g, r) for (g, r) in RUNS],
        weights=WEIGHTS,
        eval_set=EVAL_SET,
    output:
        figure("pareto", out=True) + [f"{R}/tables/macros.tex", f"{R}/tables/runs.tex"],
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/report_overview.log",
    params:
        code=code("report_overview.py"),
        profile=config["profile"],
        model=config["model"],
        data=config["data"],
        train=config.get("train"),
        task=config.get("task"),
    script:
        "../workflow/scripts/report_overview.py"


rule visualize_merges:
    input:
        weights=WEIGHTS,
        eval_set=EVAL_SET,
    output:
        figure("merges", out=True),
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/visualize_merges.log",
    benchmark:
        bench("visualize_merges")
    params:
        code=code("visualize_merges.py"),
        cfg={**{k: config[k] for k in ("seed", "model", "methods", "data", "task", "train", "paper") if k in config},
             "eval": {"device": EVAL_DEVICE}},
    resources:
        **EVAL_RESOURCES,
    script:
        "../workflow/scripts/visualize_merges.py"
