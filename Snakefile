# Training-free token reduction in ViTs: weights -> eval set -> baseline and ToMe runs -> tables,
# figures -> LaTeX paper. `snakemake --cores 8` runs the embedded default (config/config.yaml);
# `--configfile config/imagenet.yaml local.yaml` the paper profile (local.yaml: dataset paths).
# Rules import nothing heavy (no torch).
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


# The embedded default applies only when no --configfile is given: a profile file is complete on
# its own, so nothing of the default leaks into it (Snakemake would merge the two).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


# Schema errors, one line each naming the config key (a number YAML 1.1 reads as a string, 5e-2, with
# how to write it); then Snakemake's validation, which also fills defaults (tokred.study.config; no torch).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from tokred.study.config import check_schema

check_schema(config, Path(workflow.basedir) / "config" / "schema.yaml")
validate(config, "config/schema.yaml")


# Quick report jobs run on the submit host, not as cluster jobs (profiles/slurm).
localrules:
    report_reproduce,
    report_group,
    report_figures_early,
    report_headline,
    report_schedules,
    report_figures_ablations,
    report_overview,
    report_ood,
    report_systems,
    report_findings,
    report_fidelity,
    report_replication,
    paper,


include: "rules/common.smk"
include: "rules/weights.smk"
include: "rules/data.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/ood.smk"
include: "rules/timing.smk"
include: "rules/paper.smk"


rule all:
    default_target: True
    input:
        PAPER_PDF,
        PAPER_INPUTS,


# A failed run must not leave the last PDF looking current: it is renamed paper.stale.pdf and a
# STALE.txt says why, until a run succeeds again.
onerror:
    mark_stale(log)


onsuccess:
    clear_stale()
