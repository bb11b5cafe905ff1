"""Do the logits of a finished run agree on another device? Re-evaluates every run of a results folder
on `--device` and compares with the logits the pipeline saved there.

    snakemake --cores 2 --configfile config/micro.yaml            # eval.device: cpu
    python benchmarks/device_agreement.py --config config/micro.yaml --device cuda

Each run found there (`tokred.study.config.expand_runs`, FLOPs-matched runs with their solved schedule) is rebuilt
from the folder's weights and eval set and evaluated through `tokred.study.runner.compute_logits`
(fp32, TF32 off, deterministic algorithms) on the device, twice; printed per run: the largest
absolute logit difference to the saved logits, top-1 agreement, and whether the two device passes
are bit-identical. Exit status 1 when a run's difference exceeds `--atol` or its top-1 agreement is
below `--min-agreement`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> int:
    import torch
    import yaml

    from tokred import io
    from tokred.study import config as preflight
    from tokred.study.device import resolve_device
    from tokred.study.runner import apply_run, build_model, compute_logits, load_json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="the config the results were produced with")
    ap.add_argument("--results", default=None, help="results folder (default: the config's results_dir)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--atol", type=float, default=1e-3)
    ap.add_argument("--min-agreement", type=float, default=0.99)
    args = ap.parse_args()

    cfg = yaml.safe_load(Path(args.config).read_text())
    res = Path(args.results or cfg["results_dir"])
    dev = resolve_device(args.device, "--device")
    weights = res / "weights" / ("model.pt" if cfg["model"]["source"] == "embedded" else "model.safetensors")
    es = io.load_eval_set(str(res / "data" / "eval_set.pt"))
    model = build_model(cfg, str(weights))
    bad = 0
    print(f"{'run':32s} {'max |diff|':>11s} {'top-1 agree':>11s}  repeat")
    for (group, name), run in preflight.expand_runs(cfg).items():
        path = res / "runs" / group / name / "logits.pt"
        if not path.exists():
            print(f"{group + '/' + name:32s} not run")
            continue
        saved = torch.load(path, weights_only=False)["logits"]
        schedule = (load_json(str(res / "schedules" / f"{preflight.schedule_name(run['method'], run['match'])}.json"))
                    if "match" in run else None)
        apply_run(model, run, schedule)
        a, _ = compute_logits(model, es, cfg["eval"]["batch_size"], device=dev, progress=False)
        b, _ = compute_logits(model, es, cfg["eval"]["batch_size"], device=dev, progress=False)
        diff = (a - saved).abs().max().item()
        agree = (a.argmax(-1) == saved.argmax(-1)).float().mean().item()
        ok = diff <= args.atol and agree >= args.min_agreement
        bad += not ok
        print(f"{group + '/' + name:32s} {diff:11.2e} {agree:11.4f}  {'same' if torch.equal(a, b) else 'DIFFERS'}"
              f"{'' if ok else '  <- beyond tolerance'}")
    print(f"{bad} run(s) beyond --atol {args.atol} / --min-agreement {args.min_agreement} on {dev}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
