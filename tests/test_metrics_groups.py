"""Regression, calibration and per-group metrics on constructed cases with known answers."""
import numpy as np
import pandas as pd
import pytest
import torch

from helpers import metrics


def test_mae_rmse_known_values():
    truth, guess = [0, 0, 0, 0], torch.tensor([1.0, -1.0, 3.0, -3.0])
    assert metrics.mae(truth, guess) == pytest.approx(2.0)
    assert metrics.rmse(truth, guess) == pytest.approx(np.sqrt(5.0))


def test_one_off_accuracy():
    truth, guess = [0, 1, 2, 3, 4], [0, 2, 4, 3, 0]  # gaps 0, 1, 2, 0, 4
    assert metrics.one_off_accuracy(truth, guess) == pytest.approx(3 / 5)
    assert metrics.one_off_accuracy(truth, guess, tolerance=0) == pytest.approx(2 / 5)
    assert metrics.one_off_accuracy(truth, guess, tolerance=2) == pytest.approx(4 / 5)


def test_ece_zero_when_confidence_matches_accuracy():
    probs = np.tile([0.8, 0.2], (10, 1))
    targets = [0] * 8 + [1] * 2  # 80% right at 80% confidence
    assert metrics.expected_calibration_error(probs, targets) == pytest.approx(0.0)


def test_ece_overconfident_and_mixed_bins():
    assert metrics.expected_calibration_error(np.tile([0.1, 0.9], (4, 1)), [1, 1, 0, 0]) == pytest.approx(0.4)
    probs = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]]
    # bins of 0.2: (0.4, 0.6] has 0.6 (wrong), 0.55 (right); (0.6, 0.8] 0.8 (wrong); (0.8, 1] 0.9 (right)
    expected = (2 * abs(0.5 - 0.575) + 1 * 0.8 + 1 * 0.1) / 4
    assert metrics.expected_calibration_error(probs, [0, 0, 1, 1], n_bins=5) == pytest.approx(expected)


def test_binary_probability_vector_equals_two_columns():
    p = np.array([0.1, 0.35, 0.5, 0.7, 0.95, 0.62])
    targets = [0, 1, 1, 1, 1, 0]
    assert metrics.expected_calibration_error(p, targets) == pytest.approx(
        metrics.expected_calibration_error(np.stack([1 - p, p], 1), targets))


def test_reliability_table_bins_and_counts():
    table = metrics.reliability([[0.5, 0.5], [0.0, 1.0], [0.3, 0.7], [0.35, 0.65]], [0, 1, 0, 1], n_bins=10)
    assert len(table) == 10 and table["n"].sum() == 4
    assert table.loc[4, "n"] == 1  # 0.5 falls in (0.4, 0.5]
    assert table.loc[9, "n"] == 1 and table.loc[9, "accuracy"] == 1.0  # 1.0 in the last bin
    assert table.loc[6, "n"] == 2 and table.loc[6, "accuracy"] == pytest.approx(0.5)
    assert table.loc[6, "confidence"] == pytest.approx(0.675)
    assert np.isnan(table.loc[0, "accuracy"])
    np.testing.assert_allclose(table["upper"] - table["lower"], 0.1)


GROUP_TRUTH = [0, 1, 0, 1, 0, 1, 0, 1]
GROUP_GUESS = [0, 1, 1, 1, 0, 0, 0, 0]
RACE = ["a", "a", "a", "a", "b", "b", "b", "b"]
GENDER = ["m", "f", "m", "f", "m", "f", "m", "f"]


def test_group_accuracy_single_and_combined():
    single = metrics.group_accuracy(GROUP_TRUTH, GROUP_GUESS, pd.Series(RACE, name="race"))
    assert single.to_dict("list") == {"race": ["a", "b"], "n": [4, 4], "accuracy": [0.75, 0.5]}
    both = metrics.group_accuracy(GROUP_TRUTH, GROUP_GUESS, {"race": RACE, "gender": GENDER})
    acc = both.set_index(["race", "gender"])["accuracy"]
    assert acc.to_dict() == {("a", "f"): 1.0, ("a", "m"): 0.5, ("b", "f"): 0.0, ("b", "m"): 1.0}
    assert metrics.worst_group_accuracy(GROUP_TRUTH, GROUP_GUESS, {"race": RACE, "gender": GENDER}) == 0.0


def test_min_count_leaves_small_groups_out():
    groups = ["big"] * 5 + ["tiny"]
    truth, guess = [1] * 6, [1, 1, 1, 1, 0, 0]
    assert metrics.worst_group_accuracy(truth, guess, groups) == 0.0
    assert metrics.worst_group_accuracy(truth, guess, groups, min_count=2) == pytest.approx(0.8)


def test_group_accuracy_table_margins():
    table = metrics.group_accuracy_table(GROUP_TRUTH, GROUP_GUESS, pd.Series(RACE, name="race"),
                                         pd.Series(GENDER, name="gender"))
    assert table.loc["a", "m"] == 0.5 and table.loc["b", "f"] == 0.0
    assert table.loc["a", "all"] == 0.75 and table.loc["all", "f"] == 0.5
    assert table.loc["all", "all"] == pytest.approx(metrics.accuracy(GROUP_GUESS, GROUP_TRUTH))


def test_tpr_by_group_and_gap():
    # race a: males 2/2 found, females 1/2; race b: males 2/2, females 2/2 -> female TPR gap 0.5, male 0
    truth = ["m", "m", "f", "f", "m", "m", "f", "f"]
    guess = ["m", "m", "f", "m", "m", "m", "f", "f"]
    table = metrics.tpr_by_group(truth, guess, RACE, labels=["m", "f"])
    assert table.loc["a", "f"] == 0.5 and table.loc["a", "m"] == 1.0 and table.loc["b", "f"] == 1.0
    assert metrics.tpr_gap(truth, guess, RACE, labels=["m", "f"]) == pytest.approx(0.5)


def test_tpr_gap_ignores_groups_without_a_class():
    truth, guess = ["m", "f", "m", "m"], ["m", "f", "f", "m"]
    table = metrics.tpr_by_group(truth, guess, ["a", "a", "b", "b"], labels=["m", "f"])
    assert np.isnan(table.loc["b", "f"])
    assert metrics.tpr_gap(truth, guess, ["a", "a", "b", "b"], labels=["m", "f"]) == pytest.approx(0.5)


def test_error_by_group():
    bins = pd.Series(["y", "y", "o", "o"], name="bin")
    table = metrics.error_by_group([10, 20, 30, 40], [12, 16, 30, 50], bins)
    rows = table.set_index("bin")
    assert rows.loc["y", "mae"] == pytest.approx(3.0) and rows.loc["o", "mae"] == pytest.approx(5.0)
    assert rows.loc["o", "rmse"] == pytest.approx(np.sqrt(50.0)) and rows["n"].tolist() == [2, 2]
