"""trace_source groups: every patch belongs to exactly one final token, as many groups as tokens."""
import numpy as np
import torch

import tokred
from tokred.models import EMBEDDED_MEAN, EMBEDDED_STD, create_embedded_model
from tokred.report.merges import group_mean_image, merge_groups


def _model():
    torch.manual_seed(0)
    return create_embedded_model(5, embed_dim=24).eval()


def _images(n=2):
    return torch.randint(0, 256, (n, 3, 112, 112), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_groups_are_the_final_tokens():
    for method in ("tome", "ours_size_norm"):
        m = tokred.patch(_model(), method, r=13, trace_source=True)
        g = merge_groups(m, _images(), EMBEDDED_MEAN, EMBEDDED_STD)
        assert g.shape == (2, 14, 14)
        final_tokens = 196 - sum(m._tokred.rs)
        for b in range(2):
            assert len(torch.unique(g[b])) == final_tokens
        # the sizes the model carries agree with the group sizes
        sizes = m._tokred.size[:, 1:, 0]
        counts = torch.stack([torch.bincount(g[b].flatten() , minlength=197)[1:] for b in range(2)])
        assert sorted(counts[counts > 0].tolist()) == sorted(sizes.round().long().flatten().tolist())


def test_no_merge_keeps_every_patch_apart_and_colours_are_group_means():
    m = tokred.patch(_model(), "tome", r=0, trace_source=True)
    g = merge_groups(m, _images(1), EMBEDDED_MEAN, EMBEDDED_STD)
    assert len(torch.unique(g)) == 196
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    img[:8, :8] = 200  # patch (0, 0) bright; patches (0, 0) and (0, 1) share a token
    out = group_mean_image(img, np.array([[0, 0], [1, 2]]), 8)
    assert out[2, 2, 0] == out[2, 10, 0] == 100  # mean of 200 and 0, inside both patches
    assert out[12, 2, 0] == 0 and (out[:, 8] == 255).all(axis=-1)[8:].all()  # border between tokens 1 and 2
