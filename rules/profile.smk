# System studies: latency/throughput per method and batch size, GFLOPs vs measured latency over every
# evaluated run, and the token-count sweep. Each job claims every core (threads: workflow.cores), so
# no other job of this workflow runs beside it on the machine; on CUDA it also asks for gpu=1.
rule profile_latency:
    input:
        unpack(profiling_schedules),
        weights=WEIGHTS,
    output:
        csv=f"{PROFILE_DIR}/latency.csv",
        json=f"{PROFILE_DIR}/latency.json",
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/profile_latency.log",
    params:
        code=code("profile_latency.py"),
        cfg={k: config[k] for k in ("seed", "model", "data", "task", "train", "profiling") if k in config},
        methods=(PROFILING or {}).get("methods", []),
    threads: PROFILE_THREADS
    resources:
        **PROFILE_RESOURCES,
    script:
        "../workflow/scripts/profile_latency.py"


rule profile_runs:
    input:
        metrics=[run_output(g, r) for (g, r) in RUNS],
        weights=WEIGHTS,
    output:
        csv=f"{PROFILE_DIR}/runs.csv",
        json=f"{PROFILE_DIR}/runs.json",
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/profile_runs.log",
    params:
        code=code("profile_runs.py"),
        cfg={k: config[k] for k in ("seed", "model", "data", "task", "train", "profiling") if k in config},
    threads: PROFILE_THREADS
    resources:
        **PROFILE_RESOURCES,
    script:
        "../workflow/scripts/profile_runs.py"


rule profile_tokens:
    input:
        weights=WEIGHTS,
    output:
        csv=f"{PROFILE_DIR}/tokens.csv",
        json=f"{PROFILE_DIR}/tokens.json",
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/profile_tokens.log",
    params:
        code=code("profile_tokens.py"),
        cfg={k: config[k] for k in ("seed", "model", "data", "task", "train", "profiling") if k in config},
    threads: PROFILE_THREADS
    resources:
        **PROFILE_RESOURCES,
    script:
        "../workflow/scripts/profile_tokens.py"


rule report_systems:
    input:
        latency=rules.profile_latency.output.csv,
        latency_hw=rules.profile_latency.output.json,
        runs=rules.profile_runs.output.csv,
        runs_summary=rules.profile_runs.output.json,
        tokens=rules.profile_tokens.output.csv,
        tokens_hw=rules.profile_tokens.output.json,
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
