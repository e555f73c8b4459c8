"""Metrics, one section per task: classification (verification, regression and per-group metrics follow).

Inputs may be lists, NumPy arrays or tensors (on any device); scalar metrics come back as Python floats.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import pandas as pd
import torch
from sklearn import metrics as skm
from sklearn import model_selection as skm_selection


def to_numpy(x) -> np.ndarray:
    """A NumPy array from a list, array or tensor (detached, on the CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# ------------------------------------------------------------------------------------------------------------
# Classification
# ------------------------------------------------------------------------------------------------------------

def predictions(logits_or_preds) -> np.ndarray:
    """Class predictions: the argmax of ``(N, C)`` logits, or ``(N,)`` predictions as they are."""
    values = to_numpy(logits_or_preds)
    return values.argmax(1) if values.ndim == 2 else values


def accuracy(logits_or_preds, targets) -> float:
    """Top-1 accuracy from ``(N, C)`` logits or ``(N,)`` predicted classes."""
    return float(skm.accuracy_score(to_numpy(targets), predictions(logits_or_preds)))


def balanced_accuracy(logits_or_preds, targets) -> float:
    """The mean of the per-class recalls (scikit-learn's ``balanced_accuracy_score``): what a class-weighted loss
    trades plain accuracy for."""
    return float(skm.balanced_accuracy_score(to_numpy(targets), predictions(logits_or_preds)))


def topk_accuracy(logits, targets, k: Sequence[int] = (1, 5)) -> dict[int, float]:
    """``{k: fraction of rows whose target is among the k highest logits}`` (k capped at the class count).

    ``torch.topk`` rather than scikit-learn's ``top_k_accuracy_score``, which rejects two-class logits, needs
    every class present in ``targets`` and sorts the full score matrix.
    """
    logits, targets = torch.as_tensor(to_numpy(logits)), torch.as_tensor(to_numpy(targets))
    top = logits.topk(min(max(k), logits.shape[1]), dim=1).indices
    hits = top.eq(targets.reshape(-1, 1))
    return {kk: hits[:, :kk].any(1).sum().item() / len(targets) for kk in k}


def classification_report_df(y_true, y_pred, labels: Sequence | None = None,
                             target_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Precision, recall, F1 and support per class, plus a ``macro avg`` row.

    ``labels`` picks the classes and their order (default: every label seen); ``target_names`` names the rows.
    Classes never predicted get precision 0 rather than a warning.
    """
    y_true, y_pred = to_numpy(y_true), to_numpy(y_pred)
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    scores = partial(skm.precision_recall_fscore_support, y_true, y_pred, labels=labels, zero_division=0)
    names = list(labels if target_names is None else target_names)
    df = pd.DataFrame(dict(zip(["precision", "recall", "f1", "support"], scores())), index=names)
    macro = scores(average="macro")
    df.loc["macro avg"] = [*macro[:3], df["support"].sum()]
    return df.astype({"support": int})


def confusion(y_true, y_pred, labels: Sequence | None = None, normalize: str | None = None) -> np.ndarray:
    """scikit-learn's confusion matrix (rows true, columns predicted); ``normalize`` in {None, "true",
    "pred", "all"}."""
    return skm.confusion_matrix(to_numpy(y_true), to_numpy(y_pred), labels=labels, normalize=normalize)


def most_confused(y_true, y_pred, classes: Sequence[str] | None = None, top: int = 10) -> pd.DataFrame:
    """The ``top`` most frequent mistakes as ``[true, predicted, count]``, most frequent first.

    Counted from the pairs themselves, so it stays cheap with thousands of classes; ties keep label order.
    ``classes`` maps class indices to names.
    """
    pairs = pd.DataFrame({"true": to_numpy(y_true), "predicted": to_numpy(y_pred)})
    errors = pairs[pairs["true"] != pairs["predicted"]]
    counts = errors.value_counts(sort=False).rename("count").reset_index()
    counts = counts.sort_values(["count", "true", "predicted"], ascending=[False, True, True]).head(top)
    if classes is not None:
        counts[["true", "predicted"]] = counts[["true", "predicted"]].map(lambda i: classes[i])
    return counts.reset_index(drop=True)


# ------------------------------------------------------------------------------------------------------------
# Verification
# ------------------------------------------------------------------------------------------------------------
# ``labels`` are 1 for a genuine pair (same identity) and 0 for an impostor pair; ``scores`` are similarities
# (higher = more alike; pass minus a distance). A pair is accepted when its score is >= the threshold.

FARS = (1e-1, 1e-2, 1e-3)


def _pairs_input(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = to_numpy(labels).astype(np.int64).ravel(), to_numpy(scores).astype(np.float64).ravel()
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} labels but {len(scores)} scores.")
    if not np.isin(labels, (0, 1)).all() or len(np.unique(labels)) < 2:
        raise ValueError(f"labels must be 0 (impostor) / 1 (genuine) with both present; got values "
                         f"{np.unique(labels)[:5].tolist()}.")
    if not np.isfinite(scores).all():
        raise ValueError(f"{(~np.isfinite(scores)).sum()} score(s) are NaN or infinite; check the embeddings.")
    return labels, scores


def roc(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` at every distinct score (scikit-learn's ``roc_curve``, nothing dropped)."""
    return skm.roc_curve(*_pairs_input(labels, scores), drop_intermediate=False)


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``)."""
    return float(skm.roc_auc_score(*_pairs_input(labels, scores)))


def eer(labels, scores) -> tuple[float, float]:
    """``(equal error rate, threshold)``: where the false-accept rate meets the false-reject rate, linearly
    interpolated between the two ROC points that bracket the crossing; the threshold is the first score at
    which false accepts reach false rejects."""
    fpr, tpr, thresholds = roc(labels, scores)
    gap = fpr - (1 - tpr)  # rises from -1 (accept nothing) to 1 (accept everything)
    i = int(np.argmax(gap >= 0))
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1])), float(thresholds[i])


def tar_at_far(labels, scores, fars: Sequence[float] = FARS) -> dict[float, float]:
    """``{far: true-accept rate}`` at the best threshold whose false-accept rate is at most ``far``.

    With ``n`` impostor pairs the finest FAR is ``1/n``; below it the value is the TAR at zero false accepts.
    """
    fpr, tpr, _ = roc(labels, scores)
    return {far: float(tpr[fpr <= far].max()) for far in fars}


def best_threshold(labels, scores) -> tuple[float, float]:
    """``(threshold, accuracy)`` maximising the accuracy of ``score >= threshold`` on these pairs."""
    labels, scores = _pairs_input(labels, scores)
    fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    positives = labels.sum()
    accuracy = (tpr * positives + (1 - fpr) * (len(labels) - positives)) / len(labels)
    best = int(np.argmax(accuracy))
    return float(thresholds[best]), float(accuracy[best])


def cross_validate_threshold(strata, choose, right, k: int, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per stratified fold (scikit-learn's ``StratifiedKFold`` over ``strata``): ``choose(fit_rows)`` picks a
    threshold on the other folds, ``right(test_rows, threshold)`` says which held-out rows it gets right.
    Returns each fold's accuracy and threshold, so the number is never flattered by choosing where it scores."""
    strata = to_numpy(strata)
    accuracies, thresholds = [], []
    for fit, test in skm_selection.StratifiedKFold(k, shuffle=True, random_state=seed).split(strata, strata):
        threshold = choose(fit)
        accuracies.append(float(np.mean(right(test, threshold))))
        thresholds.append(float(threshold))
    return accuracies, thresholds


def kfold_accuracy(labels, scores, k: int = 10, seed: int = 0) -> dict[str, float]:
    """The LFW protocol: for each of ``k`` stratified folds, pick the best threshold on the other ``k-1``
    folds and measure accuracy on the held-out one. Returns the mean and std of the fold accuracies and
    the mean threshold."""
    labels, scores = _pairs_input(labels, scores)
    accuracies, thresholds = cross_validate_threshold(
        labels, lambda fit: best_threshold(labels[fit], scores[fit])[0],
        lambda test, threshold: (scores[test] >= threshold) == labels[test], k, seed)
    return {"accuracy": float(np.mean(accuracies)), "accuracy_std": float(np.std(accuracies)),
            "threshold": float(np.mean(thresholds))}


def verification_report(labels, scores, k: int = 10, fars: Sequence[float] = FARS) -> dict[str, float]:
    """AUC, EER (+ threshold), TAR at each FAR and the k-fold accuracy of one set of scored pairs."""
    rate, threshold = eer(labels, scores)
    report = {"auc": roc_auc(labels, scores), "eer": rate, "eer_threshold": threshold}
    report.update({f"tar@far={far:g}": tar for far, tar in tar_at_far(labels, scores, fars).items()})
    folds = kfold_accuracy(labels, scores, k=min(k, int(np.bincount(to_numpy(labels).astype(int)).min())))
    report.update({f"kfold_{name}": value for name, value in folds.items()})
    return report


# ------------------------------------------------------------------------------------------------------------
# Regression, calibration and groups
# ------------------------------------------------------------------------------------------------------------
# Ages in years or ordered bins; calibration of predicted probabilities (Guo et al. 2017, "On Calibration of
# Modern Neural Networks"); accuracy per demographic group and the gaps between groups (FairFace's report).
# ``groups`` is one array of group labels, or a dict/DataFrame of several (a group per combination).

def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    return float(skm.mean_absolute_error(to_numpy(y_true), to_numpy(y_pred)))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    return float(skm.root_mean_squared_error(to_numpy(y_true), to_numpy(y_pred)))


def one_off_accuracy(y_true, y_pred, tolerance: int = 1) -> float:
    """Share of ordinal predictions (e.g. age bins) at most ``tolerance`` bins from the truth ("one-off")."""
    gap = np.abs(to_numpy(y_true).astype(np.int64) - to_numpy(y_pred).astype(np.int64))
    return float(np.mean(gap <= tolerance))


def _top_label(probs, targets) -> tuple[np.ndarray, np.ndarray]:
    """Confidence (highest probability) and correctness of each prediction; (N,) probs are P(class 1)."""
    probs = to_numpy(probs).astype(np.float64)
    if probs.ndim == 1:
        probs = np.stack([1 - probs, probs], axis=1)
    return probs.max(1), (probs.argmax(1) == to_numpy(targets)).astype(np.float64)


def reliability(probs, targets, n_bins: int = 10) -> pd.DataFrame:
    """Reliability-diagram data: predictions binned by confidence into ``n_bins`` equal bins (lower, upper],
    with each bin's count, mean confidence and accuracy (NaN in empty bins).

    ``probs``: (N, C) class probabilities, or (N,) probabilities of class 1 for a binary task.
    """
    confidence, correct = _top_label(probs, targets)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    frame = pd.DataFrame({"bin": index, "confidence": confidence, "correct": correct})
    stats = frame.groupby("bin").agg(n=("correct", "size"), confidence=("confidence", "mean"),
                                     accuracy=("correct", "mean")).reindex(range(n_bins))
    stats["n"] = stats["n"].fillna(0).astype(int)
    stats.insert(0, "lower", edges[:-1])
    stats.insert(1, "upper", edges[1:])
    return stats


def expected_calibration_error(probs, targets, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean of |accuracy - confidence| over the ``reliability`` bins."""
    table = reliability(probs, targets, n_bins)
    full = table[table["n"] > 0]
    return float((full["n"] * (full["accuracy"] - full["confidence"]).abs()).sum() / full["n"].sum())


def _group_frame(y_true, y_pred, groups) -> tuple[pd.DataFrame, list[str]]:
    if isinstance(groups, (dict, pd.DataFrame)):
        columns = {str(name): to_numpy(values) for name, values in groups.items()}
    else:
        columns = {str(getattr(groups, "name", None) or "group"): to_numpy(groups)}
    frame = pd.DataFrame({**columns, "y_true": to_numpy(y_true), "y_pred": to_numpy(y_pred)})
    return frame, list(columns)


def group_accuracy(y_true, y_pred, groups, min_count: int = 1) -> pd.DataFrame:
    """Size ``n`` and accuracy of every group, one row per group (groups under ``min_count`` left out)."""
    frame, names = _group_frame(y_true, y_pred, groups)
    rows = [(*(key if isinstance(key, tuple) else (key,)), len(part),
             skm.accuracy_score(part.y_true, part.y_pred)) for key, part in frame.groupby(names, sort=True)]
    table = pd.DataFrame(rows, columns=[*names, "n", "accuracy"])
    return table[table["n"] >= min_count].reset_index(drop=True)


def group_accuracy_table(y_true, y_pred, rows, columns) -> pd.DataFrame:
    """Accuracy per (row group, column group), e.g. race x gender, with an ``all`` row and column."""
    row_name, col_name = getattr(rows, "name", None) or "rows", getattr(columns, "name", None) or "columns"
    frame = pd.DataFrame({row_name: to_numpy(rows), col_name: to_numpy(columns),
                          "hit": (to_numpy(y_true) == to_numpy(y_pred)).astype(np.float64)})
    return frame.pivot_table(index=row_name, columns=col_name, values="hit", aggfunc="mean", margins=True,
                             margins_name="all")


def worst_group_accuracy(y_true, y_pred, groups, min_count: int = 1) -> float:
    """The lowest accuracy of any group."""
    return float(group_accuracy(y_true, y_pred, groups, min_count)["accuracy"].min())


def tpr_by_group(y_true, y_pred, groups, labels: Sequence | None = None) -> pd.DataFrame:
    """True-positive rate (recall) of each class within each group: rows groups, columns classes; NaN where
    a group has no example of a class."""
    frame, names = _group_frame(y_true, y_pred, groups)
    labels = list(np.unique(frame["y_true"]) if labels is None else labels)
    recall = partial(skm.recall_score, labels=labels, average=None, zero_division=np.nan)
    rates = {key: recall(part.y_true, part.y_pred)
             for key, part in frame.groupby(names if len(names) > 1 else names[0], sort=True)}
    table = pd.DataFrame.from_dict(rates, orient="index", columns=labels)
    table.index.names = names
    return table


def tpr_gap(y_true, y_pred, groups, labels: Sequence | None = None) -> float:
    """The largest between-group difference in true-positive rate of any class (the equal-opportunity gap of
    Hardt et al. 2016; for gender across races, either gender taken as the positive class)."""
    table = tpr_by_group(y_true, y_pred, groups, labels)
    return float((table.max() - table.min()).max())


def error_by_group(y_true, y_pred, groups) -> pd.DataFrame:
    """Size ``n``, MAE and RMSE of a regression per group (e.g. age error per true age bin)."""
    frame, names = _group_frame(y_true, y_pred, groups)
    rows = [(*(key if isinstance(key, tuple) else (key,)), len(part), mae(part.y_true, part.y_pred),
             rmse(part.y_true, part.y_pred)) for key, part in frame.groupby(names, sort=True)]
    return pd.DataFrame(rows, columns=[*names, "n", "mae", "rmse"])
