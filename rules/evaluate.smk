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
    benchmark:
        bench("evaluate/{group}/{run}")
    params:
        code=code("evaluate.py"),
        run=lambda wc: ALL_RUNS[(wc.group, wc.run)],
        cfg={k: config[k] for k in ("seed", "model", "methods", "data", "task", "train", "eval") if k in config},
        torch_threads=EVAL_THREADS,
    threads: scaled_threads(EVAL_THREADS)
    resources:
        mem_mb=3000,
        **EVAL_RESOURCES,
    script:
        "../workflow/scripts/evaluate.py"


# A run that is the same evaluation as an earlier one (DUPLICATES): that run's files, renamed.
rule copy_run:
    input:
        metrics=lambda wc: run_output(*DUPLICATES[run_key(wc.run_path)]),
        logits=lambda wc: run_output(*DUPLICATES[run_key(wc.run_path)], "logits.pt"),
    output:
        metrics=f"{R}/runs/{{run_path}}/metrics.json",
        logits=f"{R}/runs/{{run_path}}/logits.pt",
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/runs/{{run_path}}.log",
    params:
        code=code("copy_run.py"),
        run=lambda wc: ALL_RUNS[run_key(wc.run_path)],
        same_as=lambda wc: os.path.join(*DUPLICATES[run_key(wc.run_path)]),
    wildcard_constraints:
        run_path="|".join(re.escape(os.path.join(g, r)) for (g, r) in DUPLICATES) or "(?!)",
    localrule: True
    script:
        "../workflow/scripts/copy_run.py"


ruleorder: copy_run > evaluate


# A keep shape solved to ToMe's GFLOPs at some r on this model (docs/method.md §3.4), shared by every run using it.
rule solve_schedule:
    input:
        weights=WEIGHTS,
    output:
        f"{R}/schedules/{{schedule}}.json",
    conda:
        "../environment.yml"
    log:
        f"{R}/logs/schedules/{{schedule}}.log",
    benchmark:
        bench("solve_schedule/{schedule}")
    params:
        code=code("solve_schedule.py"),
        spec=lambda wc: SCHEDULES[wc.schedule],
        cfg={k: config[k] for k in ("seed", "model", "methods", "data", "task", "train") if k in config},
    wildcard_constraints:
        schedule="|".join(re.escape(s) for s in SCHEDULES) or "none",
    threads: 1
    script:
        "../workflow/scripts/solve_schedule.py"
