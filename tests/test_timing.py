import math
import time

import numpy as np
import pytest
import torch

from tokred.study import timing


def tiny_vit():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3)


class FakeClock:
    """A timer that advances by `step` each call to fn; logs timer reads and syncs in order."""

    def __init__(self, step=0.5):
        self.now, self.step, self.log = 0.0, step, []

    def timer(self):
        self.log.append("t")
        return self.now

    def fn(self):
        self.log.append("f")
        self.now += self.step

    def sync(self):
        self.log.append("s")


def test_time_fn_counts_calls_and_excludes_warmup():
    clk = FakeClock(step=0.5)
    t = timing.time_fn(clk.fn, warmup=3, repeats=4, inner=2, timer=clk.timer, sync=clk.sync)
    assert clk.log.count("f") == 3 + 4 * 2
    assert len(t["seconds"]) == 4 and t["repeats"] == 4 and t["inner"] == 2
    # warm-up calls advance the clock but are never inside a timed interval: 0.5 s per call exactly
    assert t["seconds"] == [0.5] * 4
    assert t["median"] == t["min"] == t["max"] == 0.5 and t["std"] == 0.0 and t["iqr"] == 0.0


def test_time_fn_sleep_median():
    t = timing.time_fn(lambda: time.sleep(0.01), warmup=1, repeats=5)
    assert len(t["seconds"]) == 5
    assert 0.0099 <= t["median"] < 0.04  # sleep never undershoots; a loaded machine may overshoot
    assert t["min"] <= t["p10"] <= t["median"] <= t["p90"] <= t["max"]
    assert t["std"] >= 0 and t["iqr"] >= 0


def test_time_fn_syncs_around_each_repeat_on_cuda():
    # A fake CUDA device string with an injected barrier: no GPU needed, torch.cuda never touched.
    clk = FakeClock()
    timing.time_fn(clk.fn, device="cuda:0", warmup=2, repeats=3, timer=clk.timer, sync=clk.sync)
    # warm-up, barrier, then per repeat: start time, call, barrier, stop time
    assert "".join(clk.log) == "ff" + "s" + "tfst" * 3


def test_time_fn_default_sync_only_on_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    timing.time_fn(lambda: None, device="cpu", warmup=1, repeats=2)
    assert calls == []
    timing.time_fn(lambda: None, device="cuda", warmup=1, repeats=2)
    assert len(calls) == 1 + 2


def test_time_fn_rejects_bad_counts():
    with pytest.raises(ValueError):
        timing.time_fn(lambda: None, repeats=0)


def test_summarize_reference_values():
    s = timing.summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median"] == 3.0 and s["min"] == 1.0 and s["max"] == 100.0
    assert s["p10"] == pytest.approx(1.4) and s["p90"] == pytest.approx(61.6) and s["iqr"] == pytest.approx(2.0)
    assert s["std"] == pytest.approx(np.std([1, 2, 3, 4, 100], ddof=1))


PROFILE_KEYS = {"batch_size", "latency_ms", "latency_ms_mean", "latency_ms_std", "latency_ms_min", "latency_ms_max",
                "latency_ms_p10", "latency_ms_p90", "latency_ms_iqr", "img_per_s", "img_per_s_lo", "img_per_s_hi",
                "amp", "amp_dtype", "device", "img_size", "warmup", "repeats", "status"}


def test_time_model_rows():
    model = tiny_vit()
    rows = timing.time_model(model, batch_sizes=[1, 3], warmup=1, repeats=3)
    assert [r["batch_size"] for r in rows] == [1, 3]
    for r in rows:
        assert set(r) == PROFILE_KEYS
        assert r["img_per_s"] == pytest.approx(r["batch_size"] / (r["latency_ms"] / 1e3))
        assert r["img_per_s_lo"] <= r["img_per_s"] <= r["img_per_s_hi"]
        assert r["amp"] is False and r["device"] == "cpu" and r["img_size"] == "16x16" and r["status"] == "ok"
        assert r["latency_ms_min"] <= r["latency_ms"] <= r["latency_ms_max"]
    assert not model.training


def test_time_model_amp_needs_cuda():
    assert timing.amp_modes("cpu") == [False]
    assert timing.amp_modes("cuda:0") == [False, True]
    with pytest.raises(ValueError, match="CUDA"):
        timing.time_model(tiny_vit(), batch_sizes=[1], amp=True)
    with pytest.raises(ValueError, match="CUDA"):
        timing.token_sweep(tiny_vit(), [4], amp=True)


@pytest.mark.parametrize("scope", ["block", "model"])
def test_token_sweep_rows(scope):
    rows = timing.token_sweep(tiny_vit(), [8, 16, 17], batch_size=2, warmup=1, repeats=2, scope=scope)
    assert [r["n_tokens"] for r in rows] == [8, 16, 17]
    assert all(r["scope"] == scope and r["batch_size"] == 2 and r["latency_ms"] > 0 for r in rows)


def test_token_sweep_rejects_patched_model_and_bad_scope():
    import tokred

    model = tokred.patch(tiny_vit(), "tome", r=1)
    with pytest.raises(ValueError, match="unpatched"):
        timing.token_sweep(model, [8])
    with pytest.raises(ValueError, match="scope"):
        timing.token_sweep(tiny_vit(), [8], scope="head")


def test_hardware_info_cpu():
    info = timing.hardware_info("cpu")
    for k in ("cpu_model", "cpu_count", "torch", "timm", "torch_threads", "device"):
        assert info[k] not in (None, "")
    assert info["cuda_name"] is None and info["torch"] == torch.__version__


def test_rankdata_ties_average():
    assert timing.rankdata([10, 20, 20, 30, 20]).tolist() == [1, 3, 3, 5, 3]
    assert timing.rankdata([3, 1, 2]).tolist() == [3, 1, 2]


def test_correlation_reference_values():
    x = np.arange(1, 11, dtype=float)
    c = timing.correlation(x, np.exp(x))  # monotone, strongly nonlinear
    assert c["spearman"] == pytest.approx(1.0) and c["pearson"] < 0.9 and c["n"] == 10
    assert timing.correlation(x, 3 * x + 2)["pearson"] == pytest.approx(1.0)
    assert timing.correlation(x, -x ** 3)["spearman"] == pytest.approx(-1.0)
    # ties: ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4] -> rho = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert timing.correlation([1, 2, 2, 3], [1, 2, 3, 4])["spearman"] == pytest.approx(3 / math.sqrt(10))
    # Pearson by hand: x = [1, 2, 3], y = [1, 3, 2] -> cov 1, var 2 and 2 -> 0.5
    assert timing.correlation([1, 2, 3], [1, 3, 2])["pearson"] == pytest.approx(0.5)
    # NaN pairs dropped; degenerate inputs give NaN
    assert timing.correlation([1, 2, np.nan, 4], [2, 4, 5, 8])["n"] == 3
    assert math.isnan(timing.correlation([1, 1, 1], [1, 2, 3])["pearson"])
    assert math.isnan(timing.correlation([1], [2])["spearman"])
    with pytest.raises(ValueError):
        timing.correlation([1, 2], [1, 2, 3])


def test_package_init_does_not_import_timing():
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    code = "import sys, tokred; assert 'tokred.study.timing' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(src)})


def test_token_sweep_passes_pool_repeats_and_keep_order():
    rows = timing.token_sweep(tiny_vit(), [17, 8, 12], warmup=0, repeats=2, passes=3, shuffle=True)
    assert [r["n_tokens"] for r in rows] == [17, 8, 12]
    assert all(r["repeats"] == 6 for r in rows)
    with pytest.raises(ValueError, match="passes"):
        timing.token_sweep(tiny_vit(), [8], passes=0)
