"""Classification metrics on constructed cases with known answers."""
import numpy as np
import pytest
import torch

from helpers import metrics

Y_TRUE = [0, 0, 1, 1, 2, 2, 2]
Y_PRED = [0, 1, 1, 1, 2, 0, 1]


def test_accuracy_from_predictions_and_logits():
    assert metrics.accuracy(Y_PRED, Y_TRUE) == pytest.approx(4 / 7)
    logits = torch.nn.functional.one_hot(torch.tensor(Y_PRED), 3).float() * 5 - 1
    assert metrics.accuracy(logits, torch.tensor(Y_TRUE)) == pytest.approx(4 / 7)
    assert metrics.accuracy(np.array([2, 2]), np.array([2, 2])) == 1.0


def test_balanced_accuracy_is_the_mean_recall():
    recalls = [1 / 2, 2 / 2, 1 / 3]  # per class of Y_TRUE
    assert metrics.balanced_accuracy(Y_PRED, Y_TRUE) == pytest.approx(np.mean(recalls))
    logits = torch.nn.functional.one_hot(torch.tensor(Y_PRED), 3).float() * 5 - 1
    assert metrics.balanced_accuracy(logits, torch.tensor(Y_TRUE)) == pytest.approx(np.mean(recalls))
    # a majority-class guesser: high accuracy, chance-level balanced accuracy
    truth = [0] * 8 + [1] * 2
    assert metrics.accuracy([0] * 10, truth) == pytest.approx(0.8)
    assert metrics.balanced_accuracy([0] * 10, truth) == pytest.approx(0.5)


def test_topk_matches_manual_count():
    rng = np.random.default_rng(0)
    logits, targets = rng.normal(size=(200, 10)), rng.integers(0, 10, size=200)
    ranked = np.argsort(-logits, axis=1)
    result = metrics.topk_accuracy(torch.from_numpy(logits), targets, k=(1, 3, 5))
    for k in (1, 3, 5):
        manual = sum(t in row[:k] for row, t in zip(ranked, targets)) / len(targets)
        assert result[k] == pytest.approx(manual)
    assert result[1] == pytest.approx(metrics.accuracy(logits, targets))
    assert result[1] < result[3] < result[5] < 1


def test_topk_known_case_and_k_beyond_classes():
    logits = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    targets = torch.tensor([1, 2, 0, 1])
    assert metrics.topk_accuracy(logits, targets, k=(1, 2, 5)) == {1: 0.25, 2: 0.5, 5: 1.0}


def test_classification_report_known_values():
    report = metrics.classification_report_df(Y_TRUE, Y_PRED, target_names=["a", "b", "c"])
    assert list(report.index) == ["a", "b", "c", "macro avg"]
    assert list(report.columns) == ["precision", "recall", "f1", "support"]
    np.testing.assert_allclose(report.loc["b", ["precision", "recall", "f1"]], [0.5, 1.0, 2 / 3])
    np.testing.assert_allclose(report.loc["c", ["precision", "recall", "f1"]], [1.0, 1 / 3, 0.5])
    np.testing.assert_allclose(report.loc["macro avg", ["precision", "recall", "f1"]],
                               [2 / 3, (0.5 + 1 + 1 / 3) / 3, (0.5 + 2 / 3 + 0.5) / 3])
    assert report["support"].tolist() == [2, 2, 3, 7]


def test_classification_report_unpredicted_class_scores_zero():
    report = metrics.classification_report_df([0, 1, 2], [0, 1, 1], labels=[0, 1, 2])
    assert report.loc[2, "precision"] == 0 and report.loc[2, "recall"] == 0


def test_confusion_counts_and_normalized():
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 1, 1]])
    np.testing.assert_array_equal(metrics.confusion(Y_TRUE, Y_PRED, labels=[0, 1, 2]), expected)
    normalized = metrics.confusion(torch.tensor(Y_TRUE), torch.tensor(Y_PRED), normalize="true")
    np.testing.assert_allclose(normalized, expected / expected.sum(1, keepdims=True))


def test_most_confused_ordering_and_names():
    pairs = [(2, 1)] * 3 + [(1, 0)] * 2 + [(0, 1)] * 2 + [(0, 2)] + [(0, 0)] * 5 + [(1, 1)] * 4
    y_true, y_pred = zip(*pairs)
    table = metrics.most_confused(y_true, y_pred, top=3)
    assert list(table.columns) == ["true", "predicted", "count"]
    assert table.values.tolist() == [[2, 1, 3], [0, 1, 2], [1, 0, 2]]
    named = metrics.most_confused(y_true, y_pred, classes=["ann", "bob", "cat"])
    assert named.values.tolist() == [["cat", "bob", 3], ["ann", "bob", 2], ["bob", "ann", 2],
                                     ["ann", "cat", 1]]


def test_most_confused_all_correct_is_empty():
    assert metrics.most_confused([0, 1], [0, 1]).empty
