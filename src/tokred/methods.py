"""Method configurations: every knob of docs/method.md §2-§3 as data, with named presets.

`tokred.patch(model, method="ours_size_norm", r=13, q=0.4)` takes a preset name (or a `Method`)
and keyword overrides. ToMe and ours are points in the same space: they differ in the selector,
the merge space and the merge rule, not in separate code paths.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import numpy as np

SELECTORS = ("bipartite", "hquota_ff")
MATCH = ("k", "xnorm")
SPACES = ("x", "v", "kv", "kv_only")
SIZE_MODES = ("avg", "norm", "off")


def yaml_number_hint(text: str, integer: bool = False) -> str:
    """How to write the string `text` as a YAML number, for errors about a number given as a string.

    PyYAML (which Snakemake uses to read config files) follows YAML 1.1, where a float needs a dot
    in the mantissa and a signed exponent: `5e-2`, `1E-3`, `.5e1` and `1.0e3` load as strings, while
    `0.05` and `5.0e-2` load as floats. Returns e.g. "write 0.05 or 5.0e-2 (YAML 1.1 reads 5e-2 as a
    string ...)"; for a text that is no number, a shorter note.
    """
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        return "expected a number, not text"
    if not d.is_finite():
        return "expected a finite number"
    if integer:
        if d != d.to_integral_value():
            return f"expected an integer, {text!r} is not one"
        return f"write {int(d)} (an integer: no exponent, no quotes)"
    d = d.normalize()
    sign, digits, exp = d.as_tuple()
    if d == 0:
        forms = ["0.0"]
    else:
        plain = format(d, "f")
        plain = plain if "." in plain else plain + ".0"
        mant = ("-" if sign else "") + str(digits[0]) + "." + ("".join(map(str, digits[1:])) or "0")
        sci = f"{mant}e{exp + len(digits) - 1:+d}"
        forms = [plain, sci] if len(plain) <= 12 else [sci]
    return (f"write {' or '.join(forms)} (YAML 1.1 reads 5e-2, 1E-3, .5e1 and quoted numbers as "
            "strings: a float needs a dot and a signed exponent)")


def _knob_number(key: str, value, lo: float = -math.inf, hi: float = math.inf, *,
                 lo_open: bool = False, integer: bool = False):
    """`value` as a float (int if `integer`) in [lo, hi] (lo excluded if `lo_open`), or ValueError
    naming the method key. numpy scalars and 0-d tensors count as numbers; bools and strings do not."""
    if isinstance(value, str):
        raise ValueError(f"method key {key!r}: {value!r} is a string, not a number; "
                         f"{yaml_number_hint(value, integer)}")
    if not isinstance(value, numbers.Number) and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # 0-d numpy array / torch tensor
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a number"
        raise ValueError(f"method key {key!r}: {value!r} ({type(value).__name__}) is not {what}")
    v = int(value) if integer else float(value)
    if not math.isfinite(v):
        raise ValueError(f"method key {key!r}: {value!r} is not a finite number")
    if v < lo or v > hi or (lo_open and v == lo):
        raise ValueError(f"method key {key!r}: {value!r} outside {'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return v


@dataclass(frozen=True)
class Method:
    """How tokens are chosen (selector, q, match, topr) and merged (space and rule).

    selector   bipartite (ToMe) | hquota_ff (hub quota + farthest-first on head inflow, docs/method.md §3.1)
    q          hub quota: fraction of the kept tokens chosen as hubs by inflow x size
    match      feature that assigns merged tokens: k (keys averaged over heads) | xnorm (hidden state)
    topr       a kept token absorbs at most this many tokens (None: unlimited)
    space      x: merge hidden states after attention (ToMe) | v: also average values in-block |
               kv: attend over size-weighted merged keys/values (merge -> attend -> unmerge), then
               merge hidden states | kv_only: the kv attention alone; hidden states never merge, every
               token stays (docs/method.md §3.2)
    sizes      False: every token counts as one patch everywhere (no proportional attention, plain group
               means, hub score and push-lite without sizes, unweighted avg pooling); True: ToMe's sizes
    size_mode  weights of the hidden-state merge: avg: sizes | norm: s*|x|/mean|x| | off: uniform (every
               token once, whatever its size; sizes still act elsewhere)
    push       push-lite (alpha, beta0, delta) or None; eta: damping towards the kept token
    recenter   keep the size-weighted mean of patch tokens; clip_tau: L2 clip of merged tokens at
               clip_tau x the mean patch-token norm (how often it fires: `tokred.patching.clip_stats`)
    temperature  proportional attention n*log(s/mean s); None = ToMe's +log s (same softmax at n=1)
    prop_attn  proportional attention at all
    """

    selector: str = "bipartite"
    q: float = 0.3
    match: str = "k"
    topr: int | None = None
    space: str = "x"
    sizes: bool = True
    size_mode: str = "avg"
    push: tuple[float, float, float] | None = None
    eta: float = 0.0
    recenter: bool = False
    clip_tau: float | None = None
    temperature: float | None = None
    prop_attn: bool = True
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        """Type- and range-check every knob; numbers are stored as float (topr as int).

        Raises ValueError naming the key for a value of the wrong type (a number given as a string
        says so, with how to write it in YAML), outside its range, or not one of the choices.
        """
        def bad(key, value, allowed):
            raise ValueError(f"method key {key!r}: {value!r} is not one of {allowed}")

        def setnum(key, *args, optional=False, **kw):
            value = getattr(self, key)
            if not (optional and value is None):
                object.__setattr__(self, key, _knob_number(key, value, *args, **kw))

        for key, allowed in (("selector", SELECTORS), ("match", MATCH), ("space", SPACES),
                             ("size_mode", SIZE_MODES)):
            if not isinstance(getattr(self, key), str) or getattr(self, key) not in allowed:
                bad(key, getattr(self, key), allowed)
        setnum("q", 0.0, 1.0)
        setnum("topr", 1, integer=True, optional=True)
        if self.topr is not None and self.selector != "hquota_ff":
            raise ValueError(f"method key 'topr': applies to the hquota_ff selector only (selector is "
                             f"{self.selector!r}); drop topr or set selector: hquota_ff")
        setnum("eta", 0.0, 1.0)
        setnum("clip_tau", 0.0, lo_open=True, optional=True)
        setnum("temperature", optional=True)
        if self.push is not None:
            if isinstance(self.push, (str, bytes)) or not hasattr(self.push, "__len__") or len(self.push) != 3:
                raise ValueError(f"method key 'push': expected (alpha>=0, beta0>=0, delta) or None, "
                                 f"got {self.push!r}")
            object.__setattr__(self, "push", tuple(
                _knob_number(f"push[{i}] ({part})", v, lo)
                for i, (part, v, lo) in enumerate(zip(("alpha", "beta0", "delta"), self.push,
                                                      (0.0, 0.0, -math.inf)))))
        for key in ("sizes", "recenter", "prop_attn"):
            value = getattr(self, key)
            if not isinstance(value, (bool, np.bool_)):
                hint = "; write true or false without quotes" if isinstance(value, str) else ""
                raise ValueError(f"method key {key!r}: {value!r} ({type(value).__name__}) is not a "
                                 f"boolean{hint}")
            object.__setattr__(self, key, bool(value))

    def replace(self, **kw) -> "Method":
        unknown = sorted(set(kw) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown method key(s) {unknown}")
        return dataclasses.replace(self, **kw)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, Method] = {
    "tome": Method(name="tome"),
    # Head-diversity selection merged in key/value space (docs/method.md §3.1-3.2).
    "hquota_ff": Method(name="hquota_ff", selector="hquota_ff", q=0.3, space="kv"),
    # ... plus size-aware, normalised merging (docs/method.md §3.3). Values are interpretations:
    # push-lite alpha 0.1 (the research notes: alpha <= 0.15), beta0 0.5, delta 0.5; clip at 2x mean norm;
    # temperature n = 1 (ToMe-equivalent) so that "norm" ablates re-centre + clip alone by default.
    "ours_size_norm": Method(name="ours_size_norm", selector="hquota_ff", q=0.3, space="kv", size_mode="norm",
                             push=(0.1, 0.5, 0.5), recenter=True, clip_tau=2.0, temperature=1.0),
}
PRESETS["ours"] = dataclasses.replace(PRESETS["ours_size_norm"], name="ours")


BUILTIN = frozenset(PRESETS)


def define_methods(table: dict | None, key: str = "methods") -> dict[str, Method]:
    """Named method variants from a config table `{name: {base: <preset>, <knob>: value, ...}}`, validated
    by `Method`, and registered so that the name works wherever a preset name does (in this process:
    the Snakefile's pre-flight and every job that runs a model call this with the config's table).

    Returns {name: Method}. Raises ValueError naming `key.name` for a name that shadows a built-in
    preset, a missing or unknown base, or a bad knob."""
    out = {}
    for name, spec in (table or {}).items():
        where = f"config key '{key}.{name}'"
        if name in BUILTIN:
            raise ValueError(f"{where}: {name!r} is a built-in method; choose another name")
        if not isinstance(spec, dict) or not isinstance(spec.get("base"), str):
            raise ValueError(f"{where}: expected {{base: <method>, <knob>: value, ...}}, got {spec!r}")
        knobs = {k: v for k, v in spec.items() if k != "base"}
        if spec["base"] not in PRESETS or spec["base"] == name:
            raise ValueError(f"{where}: base {spec['base']!r} is not one of {sorted(BUILTIN)} or an earlier entry")
        try:
            meth = PRESETS[spec["base"]].replace(**knobs).replace(name=name)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: {e}") from None
        PRESETS[name] = out[name] = meth
    return out


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
