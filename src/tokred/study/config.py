"""Checks and expansions the Snakefile runs while building the DAG. Must stay light: no torch.

The JSON schema (config/schema.yaml) checks keys, types and ranges; this adds what a schema cannot
see (dataset paths on disk, the synthetic task's own keys, method knobs) so a bad config fails
before any job, and turns the experiment groups into one run spec per job. `check_yaml_types`
runs before the schema and names every number that YAML 1.1 read as a string.

One module (over 300 lines): the checks and the run expansion read the same keys and must agree on
what a run is; it is the Snakefile's single entry point.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..methods import define_methods, resolve_method, yaml_number_hint


def check_config(cfg: dict) -> None:
    """Everything about the config that fails before any job: the task keys (embedded), the dataset
    paths (paper profile) and the cross-key checks. Registers the config's named method variants
    (`methods:`, see `tokred.methods.define_methods`) first. Raises ValueError naming the config key."""
    define_methods(cfg.get("methods"))
    check_cross_keys(cfg)
    if cfg["model"]["source"] == "real":
        check_real(cfg)
    elif cfg["model"]["source"] == "embedded":
        from ..data.synthetic import resolve_task

        try:
            task = resolve_task(cfg["task"])
        except ValueError as e:
            raise ValueError(f"config key 'task': {e}") from None
        _check_low_res(cfg, task)
    else:
        from ..data.imagenet import check_dataset_path

        d = cfg["data"]
        check_dataset_path("data.imagenet_val", d["imagenet_val"], d.get("labels_file") or None,
                           num_classes=d.get("num_classes", 1000),
                           labels_convention=d.get("labels_convention"),
                           wnids_file=d.get("wnids_file"))
        ood = cfg["experiments"].get("ood") or {}
        if any(d.get(k) for k in OOD_DATASETS):
            from ..data.ood_sets import check_ood_paths

            check_ood_paths(d, imagenet_c_corruptions=ood.get("imagenet_c_corruptions"),
                            imagenet_c_severities=tuple(ood.get("severities", (1, 2, 3, 4, 5))))


def _check_low_res(cfg: dict, task: dict) -> None:
    """train.low_res (embedded): a patch grid below the task's, on which the task (and the curriculum's
    easy images, which the first phase draws) can still be drawn."""
    low = (cfg.get("train") or {}).get("low_res")
    if not low:
        return
    from ..data.synthetic import easy_task, resolve_task

    size, patch = low["img_size"], cfg["model"].get("patch_size", 8)  # 8: models.EMBEDDED_DEFAULTS (imports torch)
    if size % patch or size >= task["img_size"]:
        raise ValueError(f"config key 'train.low_res.img_size': {size} must be a multiple of model.patch_size "
                         f"({patch}) and below task.img_size ({task['img_size']})")
    try:
        low_task = resolve_task({**task, "img_size": size})
    except ValueError as e:
        raise ValueError(f"config key 'train.low_res.img_size': the task does not fit at {size} px: {e}") from None
    cur = cfg["train"].get("curriculum")
    if cur:
        try:
            easy_task(low_task, cur.get("easy"))
        except ValueError as e:
            raise ValueError(f"config key 'train.low_res.img_size': the curriculum's easy images do not fit at "
                             f"{size} px: {e} (set train.curriculum.easy)") from None


def check_real(cfg: dict) -> None:
    """The `real` profile (tokred.data.real): the one converted architecture, an input size on its
    14 px patch grid, and no group that needs labels or a classifier. Raises ValueError naming the key."""
    from ..data.real import REAL_MODEL

    m, d = cfg["model"], cfg["data"]
    if m["name"] != REAL_MODEL:
        raise ValueError(f"config key 'model.name': {m['name']!r}; model.source real supports {REAL_MODEL!r} only "
                         "(the architecture its weights are converted to)")
    if d.get("img_size") is not None and d["img_size"] % 14:
        raise ValueError(f"config key 'data.img_size': {d['img_size']} is not a multiple of the patch size 14 "
                         "(196 = 14 x 14 patches, DeiT-S's token geometry)")
    for key, value in (("experiments.ood", cfg["experiments"].get("ood")), ("timing", cfg.get("timing"))):
        if value:
            raise ValueError(f"config key '{key}': not supported with model.source real (the OOD tables report "
                             "top-1, which needs labels and a classifier; timing is not wired for it yet): remove it")
    if d.get("limit") or d.get("imagenet_val"):
        raise ValueError(f"config key 'data.{'limit' if d.get('limit') else 'imagenet_val'}': not used with "
                         "model.source real (its images are data.views views of the wheels' photos): remove it")


def _config_key(path) -> str:
    """Dotted config key of a path of dict keys and list indices: experiments.reproduce.r[1]."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _string_number(key: str, value: str, integer: bool = False) -> str:
    msg = f"config key '{key}': {value!r} is a string, not a number; {yaml_number_hint(value, integer)}"
    if re.fullmatch(r"[+-]?\d+(\.\d+)?", value):
        # a number YAML reads as one yet arrived as text: Snakemake's --config gives nested values as text
        msg += (" (a value set inside --config KEY={...} arrives as text: put the override in a YAML file "
                "and pass it with --configfile)")
    return msg


def check_yaml_types(cfg: dict, schema: dict | str | Path, errors: list | None = None) -> None:
    """Fail on values that YAML 1.1 typed differently from what the writer meant, naming each key.

    PyYAML, which Snakemake reads config files with, follows YAML 1.1: `5e-2`, `1E-3` and `.5e1`
    load as strings, a bare `off` / `no` as False. Run before the schema validation (whose message
    would only say "'5e-2' is not of type 'number'"), this reports every string where the schema
    (`cfg` checked with jsonschema against `schema`, a dict or a YAML file) wants a number, and
    every boolean where it wants a string, with how to write the value; plus strings among the
    numeric keys of the free-form synthetic task (`task`, `train.curriculum.easy`; the types of
    tokred.data.synthetic.TASK_DEFAULTS). Other schema errors are left to the validation.
    Raises ValueError with one line per such key, sorted by key.
    """
    import jsonschema
    import yaml

    if not isinstance(schema, dict):
        schema = yaml.safe_load(Path(schema).read_text())
    problems = {}  # config key -> message (a key the schema and the task check both see: once)

    def visit(err) -> None:
        if err.validator == "type":
            want = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
            key, v = _config_key(err.absolute_path), err.instance
            if isinstance(v, str) and ("number" in want or "integer" in want):
                problems[key] = _string_number(key, v, integer="number" not in want)
            elif isinstance(v, bool) and "string" in want and "boolean" not in want:
                problems[key] = (f"config key '{key}': {v!r} is a boolean, not a string; YAML 1.1 reads a "
                                 f"bare off/on/no/yes as a boolean: quote it (e.g. \"off\")")
        for sub in err.context or ():
            visit(sub)

    for err in errors if errors is not None else jsonschema.Draft202012Validator(schema).iter_errors(cfg):
        visit(err)

    model = cfg.get("model")
    if isinstance(model, dict) and model.get("source") == "embedded":
        from ..data.synthetic import TASK_DEFAULTS

        train = cfg.get("train") if isinstance(cfg.get("train"), dict) else {}
        curriculum = train.get("curriculum") if isinstance(train.get("curriculum"), dict) else {}
        for prefix, task in (("task", cfg.get("task")), ("train.curriculum.easy", curriculum.get("easy"))):
            for k, v in (task.items() if isinstance(task, dict) else ()):
                default = TASK_DEFAULTS.get(k, "")
                if isinstance(default, str):  # unknown or a text key: resolve_task reports it
                    continue
                integer = isinstance(default, int) and not isinstance(default, bool)
                for i, x in (enumerate(v) if isinstance(v, list) else [(None, v)]):
                    key = f"{prefix}.{k}" + ("" if i is None else f"[{i}]")
                    if isinstance(x, str):
                        problems[key] = _string_number(key, x, integer)
    if problems:
        raise ValueError("\n".join(problems[k] for k in sorted(problems)))


def check_schema(cfg: dict, schema: dict | str | Path) -> None:
    """Validate `cfg` against the JSON schema (a dict or a YAML file) and fail with one line per error,
    naming the config key: YAML 1.1 typing slips first (`check_yaml_types`, with how to write the
    value), then every other violation (where Snakemake's own validation reports only the first, with
    the whole sub-schema). Raises ValueError."""
    import jsonschema
    import yaml

    if not isinstance(schema, dict):
        schema = yaml.safe_load(Path(schema).read_text())
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(cfg))
    check_yaml_types(cfg, schema, errors)
    lines = {}
    for err in errors:
        leaf = jsonschema.exceptions.best_match(err.context) if err.context else err
        key = _config_key(leaf.absolute_path) or "(top level)"
        lines.setdefault(key, f"config key '{key}': {leaf.message}")
    if lines:
        raise ValueError("\n".join(lines[k] for k in sorted(lines)))


def check_cross_keys(cfg: dict) -> None:
    """What the schema cannot see across keys, checked before any job: method names outside the
    experiment groups (timing, the merge figure), layer sets against the model's depth, the ToMe
    runs that the ablation and full-layer comparisons read, and the OOD variants (`ood_runs`). Raises
    ValueError naming the key."""
    from ..schedule import parse_layers

    ex = cfg["experiments"]
    for key, names in (("timing.methods", (cfg.get("timing") or {}).get("methods", [])),
                       ("paper.visualize.methods", ((cfg.get("paper") or {}).get("visualize") or {}).get("methods", []))):
        for m in names:
            _method(key, m)
    # The depth is known without torch for the embedded model, or when the config states it (model.depth).
    depth = cfg["model"].get("depth")
    for layers in (ex.get("early") or {}).get("layers", []):
        try:
            parse_layers(layers, depth if depth is not None else 10 ** 6)
        except ValueError as e:
            raise ValueError(f"config key 'experiments.early.layers': {e}"
                             + (f" (model.depth is {depth})" if depth is not None else "")) from None
    # The reproduce method first: a misspelt name would otherwise surface as "ToMe's run is missing".
    _method("experiments.reproduce.method", ex["reproduce"]["method"])
    tome_r = set(ex["reproduce"]["r"]) if ex["reproduce"]["method"] == "tome" else set()
    for key, r in (("experiments.ablations.r", (ex.get("ablations") or {}).get("r")),
                   ("experiments.full.target_r", (ex.get("full") or {}).get("target_r"))):
        if r is not None and r not in tome_r:
            raise ValueError(f"config key '{key}': {r} is not in experiments.reproduce.r {sorted(tome_r)}; the "
                             "comparison needs ToMe's run at that r (add it there)")
    ood_runs(cfg)  # OOD methods and variants (names the experiments.ood key)
    _check_reachable(cfg)
    _check_early_regime(ex, depth)


def _check_early_regime(ex: dict, depth: int | None) -> None:
    """The keys of the early regime and of the selector/schedule split: experiments.early.method_layers
    names methods of early.methods and layer sets of early.layers; early.headline names a method other
    than ToMe and a layer set both it and ToMe run in; experiments.ablations_early.layers
    is a layer set of the model; experiments.full.tome_keep_shapes are keep shapes of full.keep_shapes
    (ToMe runs under the schedules solved for the full method). Raises ValueError naming the key."""
    from ..schedule import parse_layers

    early = ex.get("early") or {}
    for m, layer_sets in (early.get("method_layers") or {}).items():
        key = f"config key 'experiments.early.method_layers.{m}'"
        if m not in early.get("methods", []):
            raise ValueError(f"{key}: {m!r} is not in experiments.early.methods {early.get('methods', [])}")
        for layers in layer_sets:
            if layers not in early["layers"]:
                raise ValueError(f"{key}: layer set {layers!r} is not in experiments.early.layers {early['layers']}")
    head = early.get("headline")
    if head:
        key = "config key 'experiments.early.headline"
        if head["method"] == "tome" or head["method"] not in early["methods"]:
            raise ValueError(f"{key}.method': {head['method']!r} must be a method of experiments.early.methods "
                             f"{early['methods']} other than tome (the table compares it with ToMe)")
        runs_in = (early.get("method_layers") or {}).get(head["method"], early["layers"])
        if head["layers"] not in runs_in or "tome" not in early["methods"] or \
                head["layers"] not in (early.get("method_layers") or {}).get("tome", early["layers"]):
            raise ValueError(f"{key}.layers': {head['layers']!r} is not a layer set both ToMe and "
                             f"{head['method']} run in (experiments.early.layers / method_layers)")
    ae = ex.get("ablations_early")
    if ae:
        try:
            parse_layers(ae["layers"], depth if depth is not None else 10 ** 6)
        except ValueError as e:
            raise ValueError(f"config key 'experiments.ablations_early.layers': {e}"
                             + (f" (model.depth is {depth})" if depth is not None else "")) from None
    full = ex.get("full") or {}
    for shape in full.get("tome_keep_shapes") or []:
        if shape not in full["keep_shapes"]:
            raise ValueError(f"config key 'experiments.full.tome_keep_shapes': {shape!r} is not in "
                             f"experiments.full.keep_shapes {full['keep_shapes']}: ToMe runs under the schedules "
                             "solved for experiments.full.method, so the shape must be solved there too")


# The knobs of experiments.full each keep shape reads (tokred.schedule.keep_shape_ratios), with defaults.
SHAPE_KNOBS = {"uniform": (), "early": ("early_boost",), "late": ("late_k",), "early_mid_late": ("early_boost", "late_k"),
               "fixed_early_mid_late": ("early_keep", "early_keep_of", "late_k")}
SHAPE_DEFAULTS = {"late_k": 3, "early_boost": 0.1, "early_keep": 0.67, "early_keep_of": "input"}


def full_shape_kw(full: dict, shape: str) -> dict:
    """keep_shape_ratios' keyword arguments for one keep shape of the `experiments.full` section."""
    return {k: full.get(k, SHAPE_DEFAULTS[k]) for k in SHAPE_KNOBS[shape]}


def _check_reachable(cfg: dict, margin: float = 0.05) -> None:
    """Every keep shape of `experiments.full` can reach ToMe r = target_r's cost, by the token-count
    estimate of `tokred.schedule.approx_block_flops`: at its most aggressive (keep 0: the 50% cap in
    every block it may reduce) it must cost no more, at its mildest (keep 1: only what the shape fixes,
    e.g. the early boost) no less, each within `margin`; else fails naming the key.
    Needs the architecture without torch: the embedded model's config (other models are checked by
    the matching job itself, which fails naming the shape)."""
    from ..schedule import approx_block_flops, keep_shape_ratios, resolve

    full, m = cfg["experiments"].get("full"), cfg["model"]
    if not full or m["source"] != "embedded":
        return
    from ..data.synthetic import resolve_task

    depth, dim = m["depth"], m["embed_dim"]
    n = (resolve_task(cfg["task"])["img_size"] // m["patch_size"]) ** 2
    target = approx_block_flops(n, resolve(depth, n, full["target_r"]), dim)
    for shape in full["keep_shapes"]:
        shape_kw = full_shape_kw(full, shape)

        def ratios(keep, shape=shape, shape_kw=shape_kw):
            return keep_shape_ratios(shape, depth, keep, **shape_kw)

        lo = approx_block_flops(n, resolve(depth, n, keep=ratios(0.0)), dim)
        hi = approx_block_flops(n, resolve(depth, n, keep=ratios(1.0)), dim)
        key = f"config key 'experiments.full.target_r': {full['target_r']} is out of reach of keep shape {shape!r}: "
        if lo > (1 + margin) * target:
            raise ValueError(key + f"removing the most it may (half the tokens of every block it reduces) still "
                             f"costs {lo / target:.2f}x ToMe r={full['target_r']} (estimated from token counts); "
                             "lower target_r" + (" or late_k" if "late" in shape else ""))
        if hi < (1 - margin) * target:
            raise ValueError(key + f"its fixed reduction alone costs {hi / target:.2f}x ToMe r={full['target_r']} "
                             "(estimated from token counts): ToMe removes less than the shape always does; "
                             "raise target_r" + (" or early_keep (or set early_keep_of: input)" if shape.startswith("fixed")
                                                 else " or lower early_boost" if "early" in shape else ""))


def _method(key: str, name: str, overrides: dict | None = None) -> None:
    try:
        resolve_method(name, **(overrides or {}))
    except (ValueError, TypeError) as e:
        raise ValueError(f"config key '{key}': {e}") from None


def expand_runs(cfg: dict) -> dict[tuple[str, str], dict]:
    """(group, run) -> run spec for every evaluation job; the baseline is ('baseline', 'base').

    A spec names a method preset, optional knob overrides and a schedule: r / keep / layers, or
    `match` (solve a keep shape to the GFLOPs of ToMe at r = match.r on the same model).
    """
    ex = cfg["experiments"]
    runs = {("baseline", "base"): {"name": "base", "group": "baseline", "method": None}}

    def add(group: str, name: str, **spec) -> None:
        runs[(group, name)] = {"name": name, "group": group, **spec}

    rep = ex["reproduce"]
    _method("experiments.reproduce.method", rep["method"])
    for r in rep["r"]:
        add("reproduce", f"{rep['method']}_r{r}", method=rep["method"], r=r)

    if "early" in ex:
        e = ex["early"]
        method_layers = e.get("method_layers") or {}
        for m in e["methods"]:
            _method("experiments.early.methods", m)
            for layers in method_layers.get(m, e["layers"]):
                for r in e["r"]:
                    add("early", f"{m}_{layers}_r{r}", method=m, r=r, layers=layers)

    if "full" in ex:
        f = ex["full"]
        _method("experiments.full.method", f["method"])
        for keep_shape in f["keep_shapes"]:
            add("full", f"{f['method']}_{keep_shape}", method=f["method"],
                match={"tome_r": f["target_r"], "keep_shape": keep_shape, "shape_kw": full_shape_kw(f, keep_shape)})
        # Selector separated from schedule (docs/method.md §5): ToMe's matching under the keep ratios solved
        # for the full method (same kept counts per block), and the full method under ToMe's constant r.
        for keep_shape in f.get("tome_keep_shapes") or []:
            add("full", f"tome_{keep_shape}", method="tome", schedule_of=f["method"],
                match={"tome_r": f["target_r"], "keep_shape": keep_shape, "shape_kw": full_shape_kw(f, keep_shape)})
        if f.get("constant_r"):
            add("full", f"{f['method']}_r{f['target_r']}", method=f["method"], r=f["target_r"])

    if "ablations" in ex:
        a = ex["ablations"]
        _method("experiments.ablations.method", a["method"])
        ref = f"{a['method']}_ref"
        add("ablations", ref, method=a["method"], r=a["r"])
        for name, overrides in a["variants"].items():
            if name == ref:
                raise ValueError(f"config key 'experiments.ablations.variants.{name}': {ref!r} is the name of the "
                                 "reference run (the method unchanged) that every variant is compared with; rename it")
            _method(f"experiments.ablations.variants.{name}", a["method"], overrides)
            add("ablations", name, method=a["method"], overrides=overrides, r=a["r"])

    if "ablations_early" in ex:
        # The same ablations in the early setting (docs/method.md §5): every run, the reference included,
        # reduces only in `layers`; names carry the layer set so they never collide with the all-layer ones.
        a = ex["ablations_early"]
        _method("experiments.ablations_early.method", a["method"])
        ref = f"{a['method']}_{a['layers']}_ref"
        add("ablations_early", ref, method=a["method"], r=a["r"], layers=a["layers"])
        for name, overrides in a["variants"].items():
            _method(f"experiments.ablations_early.variants.{name}", a["method"], overrides)
            add("ablations_early", f"{name}_{a['layers']}", method=a["method"], overrides=overrides, r=a["r"],
                layers=a["layers"], ref=ref)
    return runs


def replicate_pairs(cfg: dict, runs: dict) -> dict[str, str]:
    """experiments.replicate: every listed run of the main model ("<group>/<run>") -> the run it is compared
    with ("baseline/base" for a ToMe run or one without a partner, else its partner from `comparisons`, which
    must be listed too). Empty without the key. Raises ValueError naming the key (unknown run, partner
    not listed, a profile that does not train its model)."""
    rep = cfg["experiments"].get("replicate")
    if not rep:
        return {}
    key = "experiments.replicate"
    if cfg["model"]["source"] != "embedded":
        raise ValueError(f"config key '{key}': only the embedded profile trains its model (model.source is "
                         f"{cfg['model']['source']!r}); remove the key")
    if cfg["seed"] in rep["train_seeds"]:
        raise ValueError(f"config key '{key}.train_seeds': {cfg['seed']} is the main model's seed (`seed`); "
                         "list the other models' seeds only")
    partners = comparisons(runs)
    names = [item.split("/", 1)[1] for item in rep["runs"]]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"config key '{key}.runs': run name(s) {twice} listed from two groups; a replicate "
                         "model holds one run per name")
    out = {}
    for item in rep["runs"]:
        group, name = item.split("/", 1)
        if (group, name) not in runs or group == "baseline":
            known = sorted(f"{g}/{r}" for (g, r) in runs if g != "baseline")
            raise ValueError(f"config key '{key}.runs': {item!r} is not a run of this config; runs: {known}")
        spec = runs[(group, name)]
        other = partners.get(name) if spec["method"] != "tome" or group == "full" else None
        if other is None:
            out[item] = "baseline/base"
            continue
        other_group = next(g for (g, r) in runs if r == other and g in (group, "early", "reproduce"))
        out[item] = f"{other_group}/{other}"
        if out[item] not in rep["runs"]:
            raise ValueError(f"config key '{key}.runs': {item!r} is compared with {out[item]!r}, which is not "
                             "listed; add it")
    return out


def replicate_runs(cfg: dict, runs: dict) -> dict[tuple[str, str], dict]:
    """The replicate models' evaluation jobs (experiments.replicate): for every training seed s, group
    `seed<s>` holds its baseline `base` and a copy of every listed run of the main model, each with
    `train_seed: s` (the weights it runs). FLOPs-matched runs reuse the main model's schedule file: GFLOPs
    depend on the architecture and the token counts, not on the weights."""
    pairs = replicate_pairs(cfg, runs)
    out = {}
    for s in (cfg["experiments"].get("replicate") or {}).get("train_seeds", []):
        group = f"seed{s}"
        out[(group, "base")] = {"name": "base", "group": group, "method": None, "train_seed": s}
        for item in pairs:
            g, name = item.split("/", 1)
            out[(group, name)] = {**runs[(g, name)], "group": group, "train_seed": s, "main_group": g}
    return out


# Run-spec keys that name or pair a run without changing what its evaluation computes.
_LABEL_KEYS = ("name", "group", "ref", "main_group")


def duplicate_runs(runs: dict) -> dict[tuple[str, str], tuple[str, str]]:
    """(group, run) -> the earlier (group, run) whose evaluation is the same computation (same weights, method,
    knobs and schedule; only names and comparison partners differ), for every run after the first of its kind.
    E.g. `ablations/ours_size_norm_ref` and `full/ours_size_norm_r13` (the method at ToMe's constant r) are one
    evaluation: the pipeline runs the first and copies its files for the other (rules/evaluate.smk)."""
    first, out = {}, {}
    for key, spec in runs.items():
        ident = json.dumps({k: v for k, v in spec.items() if k not in _LABEL_KEYS}, sort_keys=True)
        if ident in first:
            out[key] = first[ident]
        else:
            first[ident] = key
    return out


def schedule_name(method: str, match: dict) -> str:
    """File stem of a FLOPs-matched schedule (solved once, shared by every job that uses it)."""
    return f"{method}-{match['keep_shape']}-tome_r{match['tome_r']}"


def matched_schedules(runs: dict) -> dict[str, dict]:
    """Every FLOPs-matched schedule the runs need: name -> {method, tome_r, keep_shape, shape_kw}. A run with
    `schedule_of` (ToMe under another method's keep shape) uses that method's schedule, solved once."""
    out = {}
    for spec in runs.values():
        if "match" in spec:
            method = spec.get("schedule_of", spec["method"])
            out[schedule_name(method, spec["match"])] = {"method": method, **spec["match"]}
    return out


OOD_DATASETS = ("imagenet_v2", "imagenet_r", "imagenet_c")


def ood_conditions(cfg: dict) -> dict[str, dict]:
    """OOD condition name -> spec: clean, every corruption x severity, and the configured datasets."""
    ood = cfg["experiments"].get("ood")
    if not ood:
        return {}
    from ..data.corruptions import CORRUPTIONS

    conds = {"clean": {"kind": "clean"}}
    for c in ood["corruptions"]:
        if c not in CORRUPTIONS:
            raise ValueError(f"config key 'experiments.ood.corruptions': {c!r} is not one of {sorted(CORRUPTIONS)}")
        for sev in ood["severities"]:
            conds[f"{c}-{sev}"] = {"kind": "corruption", "corruption": c, "severity": sev}
    d = cfg["data"]
    if cfg["model"]["source"] != "embedded":
        for key in ("imagenet_v2", "imagenet_r"):
            if d.get(key):
                conds[key] = {"kind": "dataset", "dataset": key}
        if d.get("imagenet_c"):
            for c in ood.get("imagenet_c_corruptions") or sorted(CORRUPTIONS):
                for sev in ood["severities"]:
                    conds[f"imagenet_c-{c}-{sev}"] = {"kind": "dataset", "dataset": "imagenet_c", "corruption": c,
                                                      "severity": sev}
    return conds


def ood_runs(cfg: dict) -> list[dict]:
    """The runs evaluated under every OOD condition: the unreduced model first (the reference of the
    others), ToMe at target_r, and each method on a uniform keep solved to ToMe's GFLOPs; then each of
    `experiments.ood.variants` (names of `experiments.ablations.variants`, docs/method.md §5): the ablation
    method with that variant's knob overrides on the method's solved schedule (`<variant>_matched`; its
    `ref` is `<method>_matched`, the same schedule with no knob changed). Raises ValueError naming the key
    for an unknown method or variant, a variant whose method is not in `experiments.ood.methods`, or a
    run name used twice."""
    ood = cfg["experiments"].get("ood")
    if not ood:
        return []
    r = ood["target_r"]
    match = {"tome_r": r, "keep_shape": "uniform", "shape_kw": {}}
    runs = [{"name": "base", "group": "ood", "method": None},
            {"name": f"tome_r{r}", "group": "ood", "method": "tome", "r": r}]
    for m in ood["methods"]:
        _method("experiments.ood.methods", m)
        runs.append({"name": f"{m}_matched", "group": "ood", "method": m, "match": match})
    abl = cfg["experiments"].get("ablations") or {}
    for v in ood.get("variants") or ():
        key = f"config key 'experiments.ood.variants': {v!r}"
        if v not in (abl.get("variants") or {}):
            raise ValueError(f"{key} is not a variant of experiments.ablations.variants "
                             f"({', '.join(abl.get('variants') or {}) or 'none defined'}); define it there")
        if abl["method"] not in ood["methods"]:
            raise ValueError(f"{key} changes a knob of experiments.ablations.method {abl['method']!r}, which is "
                             f"not in experiments.ood.methods {ood['methods']}: add it (its run is the reference)")
        _method(f"experiments.ablations.variants.{v}", abl["method"], abl["variants"][v])
        runs.append({"name": f"{v}_matched", "group": "ood", "method": abl["method"],
                     "overrides": abl["variants"][v], "match": match, "ref": f"{abl['method']}_matched"})
    names = [run["name"] for run in runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"config key 'experiments.ood': run names {dup} occur twice (a variant named like a "
                         "method?); rename the variant")
    return runs


ABLATION_GROUPS = ("ablations", "ablations_early")


def selector_pairs(runs: dict) -> list[dict]:
    """The selector/schedule split of the full group (docs/method.md §5), one entry per schedule: ToMe's
    constant r first, then every keep shape ToMe also ran under. Each entry: {schedule, ours, tome} run
    names (ours = the full method, tome = ToMe's bipartite matching; both under that schedule), and for
    the keep shapes `ours_const` / `tome_const` (the same selectors at ToMe's constant r), so that every
    comparison changes one thing. [] when the config asks for none of it."""
    full = {name: spec for (g, name), spec in runs.items() if g == "full"}
    tome_shapes = {s["match"]["keep_shape"]: n for n, s in full.items() if s["method"] == "tome" and "match" in s}
    const = next(((n, s) for n, s in full.items() if s["method"] != "tome" and "r" in s), None)
    out = []
    if const is not None and ("reproduce", f"tome_r{const[1]['r']}") in runs:
        out.append({"schedule": f"constant r={const[1]['r']}", "ours": const[0], "tome": f"tome_r{const[1]['r']}"})
    for shape, tome in tome_shapes.items():
        ours = f"{full[tome]['schedule_of']}_{shape}"
        if ours in full:
            row = {"schedule": shape, "ours": ours, "tome": tome}
            if out:
                row.update(ours_const=out[0]["ours"], tome_const=out[0]["tome"])
            out.append(row)
    return out


def ood_comparisons(runs: list[dict]) -> dict[str, str]:
    """OOD run -> the run it is compared with under every condition, on the same images (McNemar, Δ):
    each method -> ToMe (the second run), each variant -> its `ref` (the method with no knob changed)."""
    tome = runs[1]["name"] if len(runs) > 1 else None
    return {run["name"]: run.get("ref") or tome for run in runs[2:]}


def comparisons(runs: dict) -> dict[str, str]:
    """Run -> the run it is compared with on the same images (McNemar, Δ columns): early and full-layer
    runs -> ToMe at equal r or equal GFLOPs (ToMe under a keep shape -> ToMe at the constant r it was
    matched to); an ablation variant -> its group's reference run (`<method>_ref`, in ablations_early
    `<method>_<layers>_ref`: the method with no knob changed, same r and layers), so that Δ is what the
    knob changes."""
    pairs = {}
    for (group, name), spec in runs.items():
        if group == "early" and spec["method"] != "tome":
            tome = f"tome_{spec['layers']}_r{spec['r']}"
            if ("early", tome) in runs:
                pairs[name] = tome
        elif group in ABLATION_GROUPS:
            ref = spec.get("ref", f"{spec['method']}_ref")
            if name != ref and (group, ref) in runs:
                pairs[name] = ref
        elif group == "full":
            r = spec["match"]["tome_r"] if "match" in spec else spec["r"]
            if ("reproduce", f"tome_r{r}") in runs:
                pairs[name] = f"tome_r{r}"
    return pairs
