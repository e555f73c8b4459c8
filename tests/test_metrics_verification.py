"""Verification metrics: scikit-learn agreement, EER and TAR@FAR on cases with known answers, LFW k-fold."""
import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import roc_auc_score, roc_curve

from helpers import metrics


def gaussian_pairs(n: int = 4000, shift: float = 2.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Genuine scores ~ N(shift/2, 1), impostor scores ~ N(-shift/2, 1)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([1, 0], n)
    scores = np.concatenate([rng.normal(shift / 2, 1, n), rng.normal(-shift / 2, 1, n)])
    return labels, scores


def brute_force_accuracy(labels, scores) -> float:
    return max(np.mean((scores >= t) == labels) for t in np.append(scores, np.inf))


def test_roc_and_auc_match_sklearn():
    labels, scores = gaussian_pairs(300, seed=1)
    fpr, tpr, thresholds = metrics.roc(torch.tensor(labels), torch.tensor(scores))
    ref = roc_curve(labels, scores, drop_intermediate=False)
    for ours, theirs in zip((fpr, tpr, thresholds), ref):
        np.testing.assert_array_equal(ours, theirs)
    assert metrics.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_eer_on_a_constructed_case():
    # accept >= 0.6: 1 of 4 impostors accepted, 1 of 4 genuine rejected -> FAR = FRR = 0.25 exactly
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.4, 0.6, 0.3, 0.2, 0.1]
    rate, threshold = metrics.eer(labels, scores)
    assert rate == pytest.approx(0.25) and threshold == pytest.approx(0.6)
    assert metrics.eer([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == (0.0, 0.8)  # separable


def test_eer_of_two_gaussians_is_the_analytic_value():
    labels, scores = gaussian_pairs(20000, shift=2.0)
    rate, threshold = metrics.eer(labels, scores)
    assert rate == pytest.approx(norm.cdf(-1.0), abs=0.006)  # crossing at 0: P(N(1,1) < 0) = 0.1587
    assert threshold == pytest.approx(0.0, abs=0.05)


def test_tar_at_far_on_a_constructed_case():
    impostors = np.arange(1000) / 1000  # 0.000 ... 0.999
    genuine = np.repeat([0.9995, 0.95, 0.5], [30, 30, 40])
    labels = np.r_[np.zeros(1000), np.ones(100)]
    tar = metrics.tar_at_far(labels, np.r_[impostors, genuine])
    assert tar == {0.1: pytest.approx(0.6), 0.01: pytest.approx(0.3), 0.001: pytest.approx(0.3)}
    assert metrics.tar_at_far(labels, np.r_[impostors, genuine], fars=[0.6])[0.6] == pytest.approx(1.0)


def test_best_threshold_and_kfold_accuracy():
    labels, scores = gaussian_pairs(500, seed=2)
    threshold, accuracy = metrics.best_threshold(labels, scores)
    assert accuracy == pytest.approx(brute_force_accuracy(labels, scores))
    assert np.mean((scores >= threshold) == labels) == pytest.approx(accuracy)
    folds = metrics.kfold_accuracy(labels, scores, k=10)
    assert folds["accuracy"] == pytest.approx(norm.cdf(1.0), abs=0.03)  # Bayes accuracy of the two Gaussians
    assert folds["threshold"] == pytest.approx(0.0, abs=0.2)


def test_kfold_accuracy_is_not_flattered_by_an_overfit_threshold():
    """19 genuine pairs at 0.9, one genuine outlier at 0.2, 20 impostors at 0.1; 10 stratified folds of 2 + 2.
    In sample, the threshold 0.2 takes the outlier in: 100%. Whichever fold holds the outlier picks 0.9 on the
    other folds (it never saw a genuine pair that low) and rejects it: 3/4 there, 4/4 in the nine others."""
    labels = np.repeat([1, 0], 20)
    scores = np.r_[np.full(19, 0.9), 0.2, np.full(20, 0.1)]
    assert metrics.best_threshold(labels, scores) == (pytest.approx(0.2), 1.0)
    for seed in (0, 1, 2):  # whichever fold the outlier falls in
        folds = metrics.kfold_accuracy(labels, scores, k=10, seed=seed)
        assert folds["accuracy"] == pytest.approx((9 * 1.0 + 0.75) / 10)  # 0.975 < 1.0
        assert folds["accuracy_std"] == pytest.approx(np.std([1.0] * 9 + [0.75]))
        assert folds["threshold"] == pytest.approx((9 * 0.2 + 0.9) / 10)


def test_cross_validated_thresholds_lie_between_the_score_clusters():
    """Genuine scores in [0.6, 0.9], impostors in [0.1, 0.4]: each fold's threshold is chosen on the other
    folds only (the lowest genuine score there, where their accuracy first reaches 100%), so it separates the
    two clusters; held out, every impostor is rejected and the only misses are genuine pairs below it."""
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 0], 50)
    scores = np.r_[rng.uniform(0.6, 0.9, 50), rng.uniform(0.1, 0.4, 50)]
    chosen, held_out = [], []

    def choose(fit):
        chosen.append(fit)
        return metrics.best_threshold(labels[fit], scores[fit])[0]

    def right(test, threshold):
        held_out.append((test, threshold))
        return (scores[test] >= threshold) == labels[test]

    accuracies, thresholds = metrics.cross_validate_threshold(labels, choose, right, k=5)
    assert len(thresholds) == 5 and all(0.4 < t <= 0.9 for t in thresholds)
    for fit, (test, threshold), accuracy in zip(chosen, held_out, accuracies, strict=True):
        assert not set(fit) & set(test) and len(fit) + len(test) == 100
        assert threshold == scores[fit][labels[fit] == 1].min()
        assert (scores[test][labels[test] == 0] < threshold).all()
        missed = (scores[test][labels[test] == 1] < threshold).sum()
        assert accuracy == pytest.approx(1 - missed / len(test))
