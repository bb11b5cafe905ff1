"""Method configurations: every knob of SPEC §2-§3 as data, with named presets.

`tokred.patch(model, method="ours_size_norm", r=13, q=0.4)` takes a preset name (or a `Method`)
and keyword overrides. ToMe and ours are points in the same space: they differ in the selector,
the merge space and the merge rule, not in separate code paths.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .schedule import _count, _entries, _number

SELECTORS = ("bipartite", "hquota_ff")
MATCH = ("k", "xnorm")
SPACES = ("x", "v", "kv")
SIZE_MODES = ("avg", "norm", "off")


@dataclass(frozen=True)
class Method:
    """How tokens are chosen (selector, q, match, topr) and merged (space and rule).

    selector   bipartite (ToMe) | hquota_ff (hub quota + farthest-first on head inflow, SPEC §3.1)
    q          hub quota: fraction of the kept tokens chosen as hubs by inflow x size
    match      feature that assigns merged tokens: k (keys averaged over heads) | xnorm (hidden state)
    topr       a kept token absorbs at most this many tokens (None: unlimited)
    space      x: merge hidden states after attention (ToMe) | v: also average values in-block |
               kv: attend over size-weighted merged keys/values (merge -> attend -> unmerge)
    size_mode  avg: size-weighted average | norm: weights s*|x|/mean|x| | off: plain average
    push       push-lite (alpha, beta0, delta) or None; eta: damping towards the kept token
    recenter   keep the size-weighted mean of patch tokens; clip_tau: L2 clip of merged tokens
    temperature  proportional attention n*log(s/mean s); None = ToMe's +log s (same softmax at n=1)
    prop_attn  proportional attention at all
    """

    selector: str = "bipartite"
    q: float = 0.3
    match: str = "k"
    topr: int | None = None
    space: str = "x"
    size_mode: str = "avg"
    push: tuple[float, float, float] | None = None
    eta: float = 0.0
    recenter: bool = False
    clip_tau: float | None = None
    temperature: float | None = None
    prop_attn: bool = True
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        def bad(key, value, allowed):
            raise ValueError(f"method key {key!r}: {value!r} is not one of {allowed}")

        # Numeric knobs as Python numbers: numpy and 0-d torch scalars are accepted (a tensor field would
        # break equality, hashing and the run name), anything else fails here with the key's name.
        num = {"q": _number, "eta": _number, "clip_tau": _number, "temperature": _number, "topr": _count}
        for key, conv in num.items():
            value = getattr(self, key)
            if value is not None:
                v = conv(value, repr(key), "method key")
                object.__setattr__(self, key, v if key == "topr" else float(v))
        if self.selector not in SELECTORS:
            bad("selector", self.selector, SELECTORS)
        if self.match not in MATCH:
            bad("match", self.match, MATCH)
        if self.space not in SPACES:
            bad("space", self.space, SPACES)
        if self.size_mode not in SIZE_MODES:
            bad("size_mode", self.size_mode, SIZE_MODES)
        if not 0.0 <= self.q <= 1.0:
            raise ValueError(f"method key 'q': {self.q!r} outside [0, 1]")
        if self.topr is not None and self.topr < 1:
            raise ValueError(f"method key 'topr': {self.topr!r} must be a positive integer or None")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"method key 'eta': {self.eta!r} outside [0, 1]")
        if self.clip_tau is not None and self.clip_tau <= 0:
            raise ValueError(f"method key 'clip_tau': {self.clip_tau!r} must be > 0")
        if self.push is not None:
            push = tuple(float(_number(v, "'push'", "method key"))
                         for v in _entries(self.push, "'push'", "method key"))
            if len(push) != 3:
                raise ValueError(f"method key 'push': expected (alpha>=0, beta0>=0, delta), got {self.push!r}")
            if push[0] < 0 or push[1] < 0:
                raise ValueError(f"method key 'push': expected (alpha>=0, beta0>=0, delta), got {self.push!r}")
            object.__setattr__(self, "push", push)

    def replace(self, **kw) -> "Method":
        unknown = sorted(set(kw) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown method key(s) {unknown}")
        return dataclasses.replace(self, **kw)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, Method] = {
    "tome": Method(name="tome"),
    # Head-diversity selection merged in key/value space (summary §1.2 A, "merge = kv").
    "hquota_ff": Method(name="hquota_ff", selector="hquota_ff", q=0.3, space="kv"),
    # ... plus size-aware, normalised merging (summary §1.2 B). Values are interpretations (SPEC §3.3):
    # push-lite alpha 0.1 (summary: alpha <= 0.15), beta0 0.5, delta 0.5; clip at 2x mean norm;
    # temperature n = 1 (ToMe-equivalent) so that "norm" ablates re-centre + clip alone by default.
    "ours_size_norm": Method(name="ours_size_norm", selector="hquota_ff", q=0.3, space="kv", size_mode="norm",
                             push=(0.1, 0.5, 0.5), recenter=True, clip_tau=2.0, temperature=1.0),
}
PRESETS["ours"] = dataclasses.replace(PRESETS["ours_size_norm"], name="ours")


def resolve_method(method: str | Method = "tome", **overrides) -> Method:
    if isinstance(method, Method):
        base = method
    elif method in PRESETS:
        base = PRESETS[method]
    else:
        raise ValueError(f"method {method!r}: expected a Method or one of {sorted(PRESETS)}")
    if overrides:
        base = base.replace(name=f"{base.name}+" + ",".join(f"{k}={v}" for k, v in sorted(overrides.items())),
                            **overrides)
    return base
