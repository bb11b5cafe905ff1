"""The eval-set job: decode and preprocess the evaluation images once into a uint8 tensor file."""
from __future__ import annotations

from .. import io


def normalization(cfg: dict) -> tuple[tuple, tuple]:
    if cfg["model"]["source"] == "embedded":
        from ..models import EMBEDDED_MEAN, EMBEDDED_STD

        return EMBEDDED_MEAN, EMBEDDED_STD
    import timm

    pc = timm.models.get_pretrained_cfg(cfg["model"]["name"])
    return tuple(pc.mean), tuple(pc.std)


def build_eval_set(cfg: dict, out: str) -> int:
    mean, std = normalization(cfg)
    d = cfg["data"]
    if cfg["model"]["source"] == "embedded":
        from . import synthetic

        images, labels = synthetic.make_images(cfg["task"], d["eval_images"], seed=d["eval_seed"])
    else:
        from . import imagenet
        from .classes import imagenet_wnids

        n_cls = d.get("num_classes", 1000)
        # The same keys as the pre-flight's check (tokred.study.config.check_config), so both label alike.
        samples = imagenet.list_samples(d["imagenet_val"], d.get("labels_file") or None, num_classes=n_cls,
                                        labels_convention=d.get("labels_convention"),
                                        class_index_wnids=imagenet_wnids(d.get("wnids_file"), num_classes=n_cls))
        tf = imagenet.build_transform(d["img_size"], d["crop_pct"], d["interpolation"])
        images, labels = imagenet.build_eval_cache(samples, tf, limit=d.get("limit"),
                                                   num_workers=d.get("decode_workers", 0))
    io.save_torch(out, {"images": images, "labels": labels, "mean": mean, "std": std})
    print(f"eval set: {tuple(images.shape)} uint8, {int(labels.max()) + 1} classes seen")
    return len(labels)
