"""Config edits for tests: one key set by its dotted path on a deep copy."""
import copy


def with_key(cfg: dict, path: str, value) -> dict:
    """A deep copy of `cfg` with the dotted `path` (e.g. "experiments.early.layers") set to `value`,
    creating missing parents."""
    cfg = copy.deepcopy(cfg)
    node = cfg
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return cfg
