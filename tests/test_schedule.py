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


def test_profiles():
    assert schedule.profile_keep("uniform", 4, 0.9) == [0.9] * 4
    assert schedule.profile_keep("early", 5, 0.9, early_boost=0.2) == pytest.approx([0.7, 0.7, 0.7, 0.9, 0.9])
    assert schedule.profile_keep("late", 5, 0.9, late_k=2) == [0.9, 0.9, 0.9, 1.0, 1.0]
    assert schedule.profile_keep("early_mid_late", 6, 0.9, late_k=2) == pytest.approx([0.8, 0.8, 0.8, 0.9, 1, 1])
    with pytest.raises(ValueError, match="profile"):
        schedule.profile_keep("middle", 4, 0.9)
