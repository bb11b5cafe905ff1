"""System studies (docs/method.md §5) as pipeline jobs: latency/throughput per method and batch size, GFLOPs vs
measured speed across every evaluated run, and the token-count sweep. Timing lives in `tokred.study.timing`.

Every output carries the hardware and versions it was measured on (`timing.hardware_info`).
"""
from __future__ import annotations

import json

import pandas as pd

from .. import io
from .runner import apply_run, build_model, load_json


def _device(cfg: dict) -> str:
    dev = cfg["timing"].get("device", "cpu")
    if dev.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(f"config key 'timing.device' is {dev!r} but CUDA is not available here")
    return dev


def latency_variants(cfg: dict, schedules: dict[str, str]) -> list[tuple[str, dict, dict]]:
    """(label, run spec, patch extras) timed by `time_latency`: the unpatched model, the patched
    model at r=0, ToMe at target r (plus tile-rounded), and every method matched to ToMe's GFLOPs."""
    p, r = cfg["timing"], cfg["timing"]["target_r"]
    out = [("unpatched", {"name": "unpatched", "method": None}, {}),
           ("patched r=0", {"name": "tome_r0", "method": "tome", "r": 0}, {}),
           (f"ToMe r={r}", {"name": f"tome_r{r}", "method": "tome", "r": r}, {})]
    out += [(f"ToMe r={r} tile {t}", {"name": f"tome_r{r}_tile{t}", "method": "tome", "r": r, "tile": t}, {})
            for t in p.get("tiles", [])]
    for m, path in schedules.items():
        out.append((f"{m} (matched)", {"name": f"{m}_matched", "method": m, "match": {}}, {"schedule": path}))
    return out


def time_latency(cfg: dict, *, weights: str, schedules: dict[str, str], out_csv: str, out_json: str,
                    threads: int = 1) -> pd.DataFrame:
    """Per variant, batch size and precision (fp32; AMP on CUDA): median latency and img/s with spread.
    Variants are interleaved per batch size so a drift of the machine's load hits them alike."""
    from . import timing
    from ..flops import count_flops

    io.set_threads(threads)
    p, dev = cfg["timing"], _device(cfg)
    model = build_model(cfg, weights)
    size = (3, *model.patch_embed.img_size)
    variants = latency_variants(cfg, schedules)
    rows = []
    for label, run, extra in variants:
        apply_run(model, run, load_json(extra.get("schedule")))
        gflops = count_flops(model, size)
        for amp in timing.amp_modes(dev):
            for row in timing.time_model(model, batch_sizes=p["batch_sizes"], device=dev, amp=amp,
                                               warmup=p["warmup"], repeats=p["repeats"]):
                rows.append({"variant": label, "run": run["name"], "gflops": gflops, **row})
        model.to("cpu")
        print(f"{label}: " + ", ".join(f"b{r['batch_size']} {r['img_per_s']:.1f} img/s"
                                       for r in rows if r["variant"] == label))
    df = pd.DataFrame(rows)
    with io.atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    io.write_json(out_json, {"hardware": timing.hardware_info(dev), "threads": threads,
                             "provenance": io.provenance(cfg, device=dev)})
    return df


def time_runs(cfg: dict, metrics_paths: list[str], *, weights: str, out_csv: str, out_json: str,
                 threads: int = 1) -> dict:
    """Time every evaluated run's exact configuration (method knobs and resolved per-block r) at one
    batch size, then correlate GFLOPs with latency and throughput (Pearson, Spearman)."""
    from tqdm.auto import tqdm

    from . import timing
    from ..methods import Method
    from ..patching import patch, unpatch

    io.set_threads(threads)
    p, dev = cfg["timing"], _device(cfg)
    model = build_model(cfg, weights)
    rows = []
    for path in tqdm(metrics_paths, desc="runs", unit="run", mininterval=5):
        m = json.loads(open(path).read())
        unpatch(model)
        if m["method_config"]:
            patch(model, Method(**m["method_config"]), r=m["resolved_r"])
        (row,) = timing.time_model(model, batch_sizes=[p["runs_batch"]], device=dev, warmup=p["warmup"],
                                         repeats=p["runs_repeats"])
        rows.append({"run": m["run"], "group": m["group"], "method": m["method"], "gflops": m["gflops"],
                     "latency_ms": row["latency_ms"], "latency_ms_p10": row["latency_ms_p10"],
                     "latency_ms_p90": row["latency_ms_p90"], "img_per_s": row["img_per_s"]})
        model.to("cpu")
    df = pd.DataFrame(rows)
    with io.atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    summary = {"latency": timing.correlation(df["gflops"], df["latency_ms"]),
               "throughput": timing.correlation(df["gflops"], df["img_per_s"]),
               "batch_size": p["runs_batch"], "hardware": timing.hardware_info(dev),
               "provenance": io.provenance(cfg, device=dev)}
    io.write_json(out_json, summary)
    print(f"GFLOPs vs latency over {len(df)} runs: Pearson {summary['latency']['pearson']:.3f}, "
          f"Spearman {summary['latency']['spearman']:.3f}")
    return summary


def time_tokens(cfg: dict, *, weights: str, out_csv: str, out_json: str, threads: int = 1) -> pd.DataFrame:
    """Latency of one block and of the whole transformer for every token count in the configured range."""
    from . import timing

    io.set_threads(threads)
    p, dev = cfg["timing"], _device(cfg)
    t = p["tokens"]
    model = build_model(cfg, weights)
    counts = list(range(t["min"], t["max"] + 1, t["step"]))
    rows = []
    for scope in ("block", "model"):
        rows += timing.token_sweep(model, counts, batch_size=t["batch"], device=dev, warmup=p["warmup"],
                                      repeats=p["repeats"], scope=scope, passes=t.get("passes", 1), shuffle=True)
    df = pd.DataFrame(rows)
    with io.atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    io.write_json(out_json, {"hardware": timing.hardware_info(dev), "provenance": io.provenance(cfg, device=dev)})
    return df
