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
