import pytest

from tokred import schedule


def test_constant_and_cap():
    assert schedule.resolve(12, 196, 13) == [13] * 12
    # cap at half the remaining patches
    assert schedule.resolve(3, 10, 8) == [5, 2, 1]


def test_inflection_matches_tome_definition():
    # (r, inflection): linear ramp from int(r*(1-inflect)) to 2r - that, truncated per block
    assert schedule.resolve(4, 1000, (10, -1)) == [20, 13, 6, 0]
    assert schedule.resolve(4, 1000, (10, 0)) == [10] * 4
    assert schedule.resolve(3, 1000, (10, 0.5)) == [5, 10, 15]


def test_list_is_padded():
    assert schedule.resolve(4, 196, [3, 4]) == [3, 4, 0, 0]
    with pytest.raises(ValueError, match="entries"):
        schedule.resolve(2, 196, [1, 2, 3])


def test_keep_ratio_rounding_and_50pct_cap():
    rs = schedule.resolve(3, 196, keep=[0.66, 0.2, 1.0])
    assert rs[0] == round(0.34 * 196)  # 67
    assert rs[1] == (196 - 67) // 2  # capped
    assert rs[2] == 0


def test_layer_sets():
    assert schedule.parse_layers("L0-2", 12) == [0, 1, 2]
    assert schedule.parse_layers("L1", 12) == [1]
    assert schedule.parse_layers("all", 4) == [0, 1, 2, 3]
    assert schedule.resolve(4, 196, 13, layers="L1") == [0, 13, 0, 0]
    with pytest.raises(ValueError, match="outside"):
        schedule.parse_layers("L12", 12)
    with pytest.raises(ValueError, match="parse"):
        schedule.parse_layers("first", 12)


def test_token_counts():
    assert schedule.token_counts(196, [13, 13]) == [196, 183, 170]


def test_exactly_one_form():
    with pytest.raises(ValueError, match="exactly one"):
        schedule.resolve(12, 196, 13, keep=0.5)
    with pytest.raises(ValueError, match="negative"):
        schedule.resolve(12, 196, [-1])


def test_keep_shapes():
    assert schedule.keep_shape_ratios("uniform", 4, 0.9) == [0.9] * 4
    assert schedule.keep_shape_ratios("early", 5, 0.9, early_boost=0.2) == pytest.approx([0.7, 0.7, 0.7, 0.9, 0.9])
    assert schedule.keep_shape_ratios("late", 5, 0.9, late_k=2) == [0.9, 0.9, 0.9, 1.0, 1.0]
    assert schedule.keep_shape_ratios("early_mid_late", 6, 0.9, late_k=2) == pytest.approx([0.8, 0.8, 0.8, 0.9, 1, 1])
    with pytest.raises(ValueError, match="keep_shape"):
        schedule.keep_shape_ratios("middle", 4, 0.9)



# --- tile rounding -------------------------------------------------------------------------------

def _totals(num_patches, rs, num_prefix_tokens=1):
    """Total tokens (protected included) after each block."""
    return [c + num_prefix_tokens for c in schedule.token_counts(num_patches, rs)[1:]]


def _check_caps(num_patches, rs):
    n = num_patches
    for ri in rs:
        assert 0 <= ri <= n // 2
        n -= ri


@pytest.mark.parametrize("tile", [8, 16, 32])
def test_tile_rounding_deit_s_geometry(tile):
    # DeiT-S: 196 patches + CLS, ToMe r=13
    rs = schedule.resolve(12, 196, 13, tile=tile)
    _check_caps(196, rs)
    assert all(t % tile == 0 for ri, t in zip(rs, _totals(196, rs)) if ri > 0)


def test_tile_schedule_mode_tracks_unrounded_counts():
    plain = _totals(196, schedule.resolve(12, 196, 13))
    for tile in (8, 16):
        rs = schedule.resolve(12, 196, 13, tile=tile)
        for t, want in zip(_totals(196, rs), plain):
            assert abs(t - want) <= tile // 2
    assert schedule.resolve(12, 196, 13, tile=8) == [13, 16, 8, 16, 8, 16, 16, 8, 16, 16, 8, 16]
    # ties keep more: after block 0 the unrounded count is 184, midway between 176 and 192
    assert schedule.resolve(12, 196, 13, tile=16)[0] == 5


def test_tile_none_is_unchanged():
    for kw in (dict(r=13), dict(r=(13, -0.5)), dict(r=[3, 20, 1]), dict(keep=0.7), dict(keep=[0.66, 0.2]),
               dict(r=13, layers="L0-2")):
        assert schedule.resolve(12, 196, **kw, tile=None) == schedule.resolve(12, 196, **kw)
        assert schedule.resolve(12, 196, **kw, tile=1) == schedule.resolve(12, 196, **kw)


def test_tile_respects_cap_and_inactive_layers():
    # 10 patches + 1: r=5 (the cap) keeps 6; tile 5 -> nearest multiple 5 needs r=6 > cap -> 10 (r=1)
    assert schedule.resolve(1, 10, 5, tile=5) == [1]
    # no reachable multiple: 3 patches + 1, cap 1 -> totals {3, 4}; tile 8 -> r unchanged
    assert schedule.resolve(1, 3, 1, tile=8) == [1]
    for r in (13, 40, 98, (13, -1)):
        _check_caps(196, schedule.resolve(12, 196, r, tile=16))
    rs = schedule.resolve(12, 196, 13, layers="L1", tile=8)
    assert [i for i, v in enumerate(rs) if v] == [1] and (197 - rs[1]) % 8 == 0
    assert schedule.resolve(12, 196, [0, 0, 9], tile=8)[:2] == [0, 0]
    assert schedule.resolve(12, 196, [0, 0, 9], tile=8)[3:] == [0] * 9


def test_tile_counts_protected_tokens_and_keep_form():
    rs = schedule.resolve(12, 196, keep=0.9, tile=8, num_prefix_tokens=2)  # CLS + distill
    assert any(rs) and all(t % 8 == 0 for ri, t in zip(rs, _totals(196, rs, 2)) if ri)
    with pytest.raises(ValueError, match="tile"):
        schedule.resolve(12, 196, 13, tile=0)
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        schedule.resolve(12, 196, 13, tile=8, num_prefix_tokens=-1)
