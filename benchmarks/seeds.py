"""Several trained models (training seeds) of one calibration setting against the embedded benchmark's
targets (benchmarks/CALIBRATION.md): one row per model, then the mean over models with a 95% t-interval
across models (tokred.report.replication.across_models), and whether each target holds on every model.

    python benchmarks/seeds.py /tmp/calib/s1_map_400.json /tmp/calib/s1_map_400_seed1.json ...

Reads the JSON files `benchmarks/calibrate.py` writes (with its default --checks). Differences are
paired per image within a model: ours - ToMe in Top-1 points, with the paired SE of that model.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from tokred.report.replication import across_models  # noqa: E402


CHECKS = {"L1": "L1:tome:13", "L2": "L2:tome:13", "tome_L02": "L0-2:tome:13", "ours_L02": "L0-2:ours_size_norm:13",
          "ours_matched": "matched:ours_size_norm:13"}


def row(res: dict) -> dict:
    t13 = res["tome"].get("13") or res["tome"].get(13)
    c = res.get("checks", {})
    out = {"name": res["name"], "seed": res["args"]["seed"], "n": res["n_eval"], "base": res["base"]["top1"],
           "tome13_drop": t13["drop"], "tome13_se": t13["se"],
           "kl_by_r": [res["tome"][k]["kl"] for k in sorted(res["tome"], key=int) if int(k) > 0]}
    for key in ("L1", "L2"):
        if CHECKS[key] in c:
            out[f"{key}_kl"], out[f"{key}_drop"], out[f"{key}_se"] = (c[CHECKS[key]][k] for k in ("kl", "drop", "se"))
    # ours - ToMe in Top-1 (pp): the methods' drops against the same baseline, so drop_tome - drop_ours
    if CHECKS["tome_L02"] in c and CHECKS["ours_L02"] in c:
        out["ours_minus_tome_L02"] = c[CHECKS["tome_L02"]]["drop"] - c[CHECKS["ours_L02"]]["drop"]
    if CHECKS["ours_matched"] in c:
        out["ours_minus_tome_matched"] = t13["drop"] - c[CHECKS["ours_matched"]]["drop"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="calibrate.py JSON files, one per trained model")
    a = p.parse_args(argv)
    rows = [row(json.load(open(f))) for f in a.results]
    cols = ["base", "tome13_drop", "L1_kl", "L2_kl", "L1_drop", "L2_drop", "ours_minus_tome_L02",
            "ours_minus_tome_matched"]
    print(f"{'model':<24}" + "".join(f"{c:>24}" for c in cols))
    for r in rows:
        print(f"{r['name']:<24}" + "".join(f"{r.get(c, math.nan):>24.4g}" for c in cols))
    print(f"{'mean [95% across models]':<24}" + "".join(
        "{:>24}".format("{:.3g} [{:.3g}, {:.3g}]".format(*across_models([r[c] for r in rows]))) if all(c in r for r in rows)
        else f"{'-':>24}" for c in cols))
    print("\ntargets (every model):")
    checks = {
        "base >= 90%": all(r["base"] >= 90 for r in rows),
        "ToMe r=13 drop >= 1 pp and >= 3 SE": all(r["tome13_drop"] >= 1 and r["tome13_drop"] >= 3 * r["tome13_se"]
                                                  for r in rows),
        "KL(B||M) >= 1e-3 at L1 and at L2 (r=13)": all(r.get("L1_kl", 0) >= 1e-3 and r.get("L2_kl", 0) >= 1e-3
                                                       for r in rows),
        "L1 or L2 drop distinguishable from 0 (|drop| >= 2 SE)": all(
            any(r.get(f"{k}_se", 0) > 0 and abs(r[f"{k}_drop"]) >= 2 * r[f"{k}_se"] for k in ("L1", "L2")) for r in rows),
        "KL rises with r": all(all(b > a for a, b in zip(r["kl_by_r"], r["kl_by_r"][1:])) for r in rows),
    }
    for key in ("ours_minus_tome_L02", "ours_minus_tome_matched"):
        signs = {math.copysign(1, r[key]) if r.get(key) else 0 for r in rows}
        checks[f"sign of {key} the same on every model"] = len(signs) == 1 and 0 not in signs
    for k, ok in checks.items():
        print(f"  {'yes' if ok else 'NO ':<4} {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
