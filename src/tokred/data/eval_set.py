"""The eval-set job: decode and preprocess the evaluation images once into a uint8 tensor file."""
from __future__ import annotations

from .. import io


def build_eval_set(cfg: dict, out: str) -> int:
    """Write {"images": uint8 [N,3,H,W], "labels": int64 [N], "mean", "std", "preprocess"} to `out`
    (atomically); returns N. `preprocess` is the hub model's data config as used
    (`tokred.data.preprocess.data_config`: input_size, crop_pct, interpolation, mean, std, crop_mode),
    None for the embedded model; the OOD job and the paper's setup text read it from here. The `real`
    profile's set (`tokred.data.real.build_real_eval_set`) has labels None and its views' manifest."""
    d = cfg["data"]
    if cfg["model"]["source"] == "real":
        from pathlib import Path

        from .real import IMG_SIZE, build_real_eval_set

        es = build_real_eval_set(Path(cfg["results_dir"]) / "wheels", d["views"], d.get("view_seed", 0),
                                 d.get("img_size") or IMG_SIZE)
        io.save_torch(out, es)
        print(f"eval set: {tuple(es['images'].shape)} uint8 views of {len(es['photos'])} real photos, no labels")
        return len(es["images"])
    if cfg["model"]["source"] == "embedded":
        from . import synthetic
        from ..models import EMBEDDED_MEAN, EMBEDDED_STD

        mean, std, dc = EMBEDDED_MEAN, EMBEDDED_STD, None
        images, labels = synthetic.make_images(cfg["task"], d["eval_images"], seed=d["eval_seed"])
    else:
        from . import imagenet
        from .classes import imagenet_wnids
        from .preprocess import data_config, eval_transform

        dc = data_config(cfg)
        mean, std = dc["mean"], dc["std"]
        n_cls = d.get("num_classes", 1000)
        # The same keys as the pre-flight's check (tokred.study.config.check_config), so both label alike.
        samples = imagenet.list_samples(d["imagenet_val"], d.get("labels_file") or None, num_classes=n_cls,
                                        labels_convention=d.get("labels_convention"),
                                        class_index_wnids=imagenet_wnids(d.get("wnids_file"), num_classes=n_cls))
        print(f"preprocessing of {cfg['model']['name']} (timm pretrained_cfg, data.* overrides): {dc}")
        images, labels = imagenet.build_eval_cache(samples, eval_transform(dc), limit=d.get("limit"),
                                                   num_workers=d.get("decode_workers", 0))
    io.save_torch(out, {"images": images, "labels": labels, "mean": mean, "std": std, "preprocess": dc})
    print(f"eval set: {tuple(images.shape)} uint8, {int(labels.max()) + 1} classes seen")
    return len(labels)
