"""The promotion gate's rules, one by one, and the reasons a run log shows."""

import math

import numpy as np
import pytest

from flows.promotion import CHALLENGER, CHAMPION, Decision, backward_transfer, decide

CHAMP = {"school_a": 0.30, "school_b": 0.20, "school_c": 0.25}


def gate(new_overall=0.26, new=None, pooled=0.20, champ_overall=0.25, champ=CHAMP, limit=0.05, **kw) -> Decision:
    new = dict(CHAMP) if new is None else new
    return decide(new_overall, new, pooled, champ_overall, champ, limit, **kw)


def test_first_version_without_champion_is_promoted_when_it_beats_pooled():
    d = decide(0.22, {"school_a": 0.1}, 0.20, None, None, 0.05)
    assert d == Decision(True, CHAMPION, d.reasons)
    assert d.reasons[0] == "first version: no champion"
    assert "beats pooled 0.200" in d.reasons[-1]


def test_first_version_that_does_not_beat_pooled_becomes_challenger():
    d = decide(0.19, {}, 0.20, None, None, 0.05)
    assert (d.promote, d.alias) == (False, CHALLENGER)
    assert d.reasons == ["overall R² 0.190 does not beat the pooled baseline 0.200"]


def test_promotion_explains_every_rule():
    new = {"school_a": 0.31, "school_b": 0.169, "school_c": 0.26}
    d = gate(new_overall=0.252, new=new, pooled=0.207, champ_overall=0.249)
    assert d.promote and d.alias == CHAMPION
    assert d.reasons[0] == "overall R² 0.252 ≥ champion 0.249"
    assert d.reasons[1].startswith("worst dataset change −0.031 (school_b; max loss 0.050)")
    assert d.reasons[2] == "beats pooled 0.207 (R² 0.252)"
    assert d.summary().startswith("promote to champion: overall R² 0.252")


def test_equal_overall_is_enough():
    assert gate(new_overall=0.25, champ_overall=0.25).promote


def test_worse_overall_than_champion_is_rejected():
    d = gate(new_overall=0.241, champ_overall=0.250)
    assert not d.promote and d.alias == CHALLENGER
    assert d.reasons == ["overall R² 0.241 < champion 0.250"]


def test_a_dataset_losing_more_than_the_limit_blocks_promotion_and_is_named():
    new = {"school_a": 0.219, "school_b": 0.21, "school_c": 0.25}
    d = gate(new_overall=0.30, new=new)
    assert not d.promote
    assert d.reasons == ["school_a lost 0.081 R² against the champion (0.300 → 0.219; max 0.050)"]


def test_offenders_are_listed_worst_first_and_capped():
    champ = {f"s{i:02d}": 0.5 for i in range(8)}
    new = {f"s{i:02d}": 0.5 - 0.06 - 0.01 * i for i in range(8)}
    d = decide(0.6, new, 0.1, 0.5, champ, 0.05)
    assert [r.split()[0] for r in d.reasons[:5]] == ["s07", "s06", "s05", "s04", "s03"]
    assert d.reasons[5] == "and 3 more of 8 shared datasets lost more than 0.050"


def test_a_loss_exactly_at_the_limit_passes_despite_float_noise():
    # 0.20 - 0.15 = 0.05000000000000002 in floating point
    d = decide(0.3, {"s": 0.15}, 0.1, 0.3, {"s": 0.20}, 0.05)
    assert d.promote, d.reasons


def test_only_datasets_known_to_both_count():
    new = {"school_a": 0.30, "new_school": -5.0}
    champ = {"school_a": 0.30, "retired_school": 0.9}
    assert decide(0.3, new, 0.1, 0.3, champ, 0.05).promote


def test_no_shared_dataset_is_said_and_not_held_against_the_new_version():
    d = decide(0.3, {"x": 0.1}, 0.1, 0.3, {"y": 0.9}, 0.05)
    assert d.promote
    assert "no dataset scored by both the new version and the champion" in d.reasons


def test_nan_scores_of_single_datasets_are_skipped():
    d = decide(0.3, {"a": math.nan, "b": 0.2}, 0.1, 0.3, {"a": 0.5, "b": 0.2}, 0.05)
    assert d.promote


def test_not_beating_pooled_blocks_even_a_better_version():
    d = gate(new_overall=0.26, pooled=0.26)
    assert not d.promote
    assert d.reasons == ["overall R² 0.260 does not beat the pooled baseline 0.260"]


def test_without_a_pooled_baseline_the_rule_is_skipped_and_said():
    for pooled in (None, -math.inf):
        d = gate(pooled=pooled)
        assert d.promote and d.reasons[-1] == "no pooled baseline in this run: nothing to beat"
    assert gate(pooled=math.inf, higher_is_better=False, new_overall=0.2).reasons[-1].startswith("no pooled")
    nan = gate(pooled=math.nan)
    assert not nan.promote and "pooled baseline R² is not a number" in nan.reasons[0]


def test_every_failed_rule_is_reported():
    new = {"school_a": 0.1, "school_b": 0.2, "school_c": 0.25}
    d = gate(new_overall=0.2, new=new, pooled=0.21, champ_overall=0.25)
    assert len(d.reasons) == 3
    assert d.reasons[0].startswith("overall R² 0.200 < champion")
    assert d.reasons[1].startswith("school_a lost 0.200")
    assert d.reasons[2].startswith("overall R² 0.200 does not beat the pooled")


def test_nan_overall_is_rejected():
    d = gate(new_overall=math.nan)
    assert not d.promote and "not a number" in d.reasons[0]


def test_lower_is_better_metrics_flip_every_comparison():
    champ = {"a": 1.0, "b": 2.0}
    ok = decide(0.9, {"a": 1.04, "b": 1.5}, 1.2, 1.0, champ, 0.05, higher_is_better=False, metric="RMSE")
    assert ok.promote
    assert ok.reasons[0] == "overall RMSE 0.900 ≤ champion 1.000"
    assert ok.reasons[1].startswith("worst dataset change −0.040 (a;")
    bad = decide(1.1, {"a": 1.2, "b": 2.0}, 1.05, 1.0, champ, 0.05, higher_is_better=False, metric="RMSE")
    assert not bad.promote
    assert bad.reasons[0] == "overall RMSE 1.100 > champion 1.000"
    assert bad.reasons[1].startswith("a lost 0.200 RMSE")
    assert bad.reasons[2] == "overall RMSE 1.100 does not beat the pooled baseline 1.050"


def test_numpy_scores_are_numbers():
    d = decide(np.float32(0.3), {"a": np.float64(0.3)}, np.float64(0.1), np.float32(0.3), {"a": 0.3}, 0.05)
    assert d.promote


def test_backward_transfer_is_the_mean_change_on_shared_datasets():
    assert backward_transfer({"a": 0.3, "b": 0.1, "new": 9.0}, {"a": 0.2, "b": 0.2, "old": 9.0}) == pytest.approx(0.0)
    assert backward_transfer({"a": 0.5, "b": 0.4}, {"a": 0.2, "b": 0.3}) == pytest.approx(0.2)
    assert math.isnan(backward_transfer({"a": 0.5}, {"b": 0.5}))
