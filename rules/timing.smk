# System studies: latency/throughput per method and batch size, GFLOPs vs measured latency over every
# evaluated run, and the token-count sweep. Each job claims every core (threads: workflow.cores), so
# no other job of this workflow runs beside it on the machine; on CUDA it also asks for gpu=1.
rule time_latency:
    input:
        unpack(timing_schedules),
        weights=WEIGHTS,
    output:
        csv=f"{TIMING_DIR}/latency.csv",
        json=f"{TIMING_DIR}/latency.json",
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/time_latency.log",
    benchmark:
        bench("time_latency")
    params:
        code=code("time_latency.py"),
        cfg={k: config[k] for k in ("seed", "model", "methods", "data", "task", "train", "timing") if k in config},
        methods=(TIMING or {}).get("methods", []),
    threads: TIMING_THREADS
    resources:
        **TIMING_RESOURCES,
    script:
        "../workflow/scripts/time_latency.py"


rule time_runs:
    input:  # each evaluation once: a run copied from another (DUPLICATES) would time the same model twice
        metrics=[run_output(g, r) for (g, r) in RUNS if (g, r) not in DUPLICATES],
        weights=WEIGHTS,
    output:
        csv=f"{TIMING_DIR}/runs.csv",
        json=f"{TIMING_DIR}/runs.json",
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/time_runs.log",
    benchmark:
        bench("time_runs")
    params:
        code=code("time_runs.py"),
        cfg={k: config[k] for k in ("seed", "model", "methods", "data", "task", "train", "timing") if k in config},
    threads: TIMING_THREADS
    resources:
        **TIMING_RESOURCES,
    script:
        "../workflow/scripts/time_runs.py"


rule time_tokens:
    input:
        weights=WEIGHTS,
    output:
        csv=f"{TIMING_DIR}/tokens.csv",
        json=f"{TIMING_DIR}/tokens.json",
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/time_tokens.log",
    benchmark:
        bench("time_tokens")
    params:
        code=code("time_tokens.py"),
        cfg={k: config[k] for k in ("seed", "model", "methods", "data", "task", "train", "timing") if k in config},
    threads: TIMING_THREADS
    resources:
        **TIMING_RESOURCES,
    script:
        "../workflow/scripts/time_tokens.py"


rule report_systems:
    input:
        latency=rules.time_latency.output.csv,
        latency_hw=rules.time_latency.output.json,
        runs=rules.time_runs.output.csv,
        runs_summary=rules.time_runs.output.json,
        tokens=rules.time_tokens.output.csv,
        tokens_hw=rules.time_tokens.output.json,
    output:
        figure("latency", out=True) + figure("gflops_vs_latency", out=True) + figure("token_sweep", out=True) + [f"{R}/tables/system_macros.tex"],
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/report_systems.log",
    params:
        code=code("report_systems.py"),
    script:
        "../workflow/scripts/report_systems.py"
