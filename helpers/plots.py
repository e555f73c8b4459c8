"""Figures for the notebooks: image grids, augmentation previews, counts, training curves, confusion matrices.

Every function returns a ``matplotlib.figure.Figure`` that is already closed in pyplot, so helpers never show
or leak figures: a notebook displays the returned figure once (as a cell's last value, or ``display(fig)``),
a script calls ``fig.savefig``. Functions that draw one panel also accept ``ax`` to draw into a figure of
your own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

if (
    os.name == "posix"
    and sys.platform != "darwin"
    and not os.environ.get("DISPLAY")
    and not os.environ.get("MPLBACKEND")
    and "ipykernel" not in sys.modules
):
    matplotlib.use("Agg")  # headless: no window system to open figures on

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from sklearn.metrics import ConfusionMatrixDisplay

from helpers import transforms
from helpers.imageio import load_rgb

ImageLike = Image.Image | torch.Tensor | np.ndarray | str | Path


def to_display(image: ImageLike) -> np.ndarray:
    """An ``H x W x 3`` array for ``imshow`` from a PIL image, a path, a ``C x H x W`` tensor in [0, 1]
    (or uint8), or an ``H x W (x C)`` array."""
    if isinstance(image, (str, Path)):
        image = load_rgb(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = image.permute(1, 2, 0) if image.ndim == 3 else image
        image = image.numpy()
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 1)
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image


def _new_figure(size: tuple[float, float]) -> Figure:
    """A pyplot figure (so notebooks render it) closed at once (so it is shown only when returned)."""
    fig = plt.figure(figsize=size, layout="constrained")
    plt.close(fig)
    return fig


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6, 4)) -> tuple[Figure, np.ndarray]:
    fig = _new_figure(size)
    return fig, fig.subplots(nrows, ncols, squeeze=False).ravel()


def _target(ax: Axes | None, size: tuple[float, float] = (6, 4)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, axes = _figure(size=size)
    return fig, axes[0]


def image_grid(
    images: Sequence[ImageLike], titles: Sequence[str] | None = None, ncols: int = 8, cell: float = 1.6
) -> Figure:
    """Images in a grid of ``ncols`` columns, with an optional title above each."""
    if not len(images):
        raise ValueError("image_grid needs at least one image.")
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    title_room = 0.3 * nrows if titles is not None else 0
    fig, axes = _figure(nrows, ncols, (cell * ncols, cell * nrows + title_room))
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < len(images):
            ax.imshow(to_display(images[i]))
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    return fig


def preview_grid(
    image: Image.Image | str | Path,
    augment: str,
    image_size: int,
    n: int = 8,
    ncols: int = 8,
    seed: int | None = 0,
    norm: str = "imagenet",
) -> Figure:
    """The original image followed by ``n`` train-time augmentations of level ``augment``."""
    original = image if isinstance(image, Image.Image) else load_rgb(image)
    views = transforms.preview(original, augment, image_size, n=n, seed=seed, norm=norm)
    fig = image_grid([original, *views], ["original", *(f"{augment} #{i + 1}" for i in range(n))], ncols=ncols)
    fig.suptitle(f"train augmentation '{augment}'", fontsize=10)
    return fig


def steps_grid(image: Image.Image | str | Path, augment: str, image_size: int, n: int = 4, seed: int = 0) -> Figure:
    """One row per random step of level ``augment`` (each applied alone), ``n`` draws per row."""
    previews = transforms.step_previews(image, augment, image_size, n=n, seed=seed)
    images = [view for views in previews.values() for view in views]
    titles = [f"{name} #{i + 1}" for name, views in previews.items() for i in range(len(views))]
    fig = image_grid(images, titles, ncols=n)
    fig.suptitle(f"'{augment}' steps one at a time", fontsize=10)
    return fig


def bar_counts(
    counts: pd.Series | Mapping,
    title: str = "",
    top: int | None = None,
    ax: Axes | None = None,
    horizontal: bool | None = None,
) -> Figure:
    """Bars of ``counts`` (category -> count, e.g. ``df[col].value_counts()``), only the ``top`` largest."""
    counts = pd.Series(counts)
    if top is not None:
        counts = counts.sort_values(ascending=False).head(top)
    horizontal = len(counts) > 12 if horizontal is None else horizontal
    fig, ax = _target(ax, (7, max(3.0, 0.25 * len(counts))) if horizontal else (7, 4))
    labels = counts.index.astype(str)
    if horizontal:
        ax.barh(labels[::-1], counts.values[::-1])
        ax.set_xlabel("count")
    else:
        ax.bar(labels, counts.values)
        ax.set_ylabel("count")
        ax.tick_params(axis="x", labelrotation=45 if len(counts) > 4 else 0)
    ax.set_title(title)
    return fig


def histogram(
    values, bins: int | Sequence[float] = 30, title: str = "", xlabel: str = "", ax: Axes | None = None
) -> Figure:
    """A histogram of ``values`` (NaNs dropped)."""
    values = pd.Series(np.asarray(values).ravel()).dropna()
    fig, ax = _target(ax)
    ax.hist(values, bins=bins)
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    return fig


def plot_history(history: pd.DataFrame, extra: Sequence[str] = ()) -> Figure:
    """Loss, accuracy (plus ``extra`` metric columns) and learning rate per epoch from an engine history."""
    if "epoch" not in history.columns:
        raise KeyError(
            f"history needs an 'epoch' column; found {list(history.columns)}; expected epoch, "
            "train_loss, val_loss, train_acc, val_acc, lr."
        )
    panels = [
        ("loss", ["train_loss", "val_loss"]),
        ("accuracy", ["train_acc", "val_acc", *extra]),
        ("learning rate", ["lr"]),
    ]
    fig, axes = _figure(1, 3, (13, 3.6))
    for ax, (name, columns) in zip(axes, panels, strict=True):
        present = [c for c in columns if c in history.columns and history[c].notna().any()]
        for column in present:
            ax.plot(history["epoch"], history[column], marker="o", markersize=3, label=column)
        ax.set(title=name, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if present and name != "learning rate":
            ax.legend(fontsize=8)
        if not present:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    return fig


def confusion_matrix(
    y_true,
    y_pred,
    labels: Sequence | None = None,
    normalize: str | None = None,
    display_labels: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """sklearn's confusion matrix of ``y_true`` vs ``y_pred``; ``normalize``: 'true', 'pred', 'all', None."""
    n = len(labels) if labels is not None else len(np.union1d(y_true, y_pred))
    fig, ax = _target(ax, (max(4.0, 0.45 * n + 2), max(3.5, 0.45 * n + 1.5)))
    ConfusionMatrixDisplay.from_predictions(
        y_true,
        y_pred,
        labels=labels,
        normalize=normalize,
        display_labels=display_labels,
        ax=ax,
        include_values=n <= 20,
        values_format=".2f" if normalize else "d",
        colorbar=False,
        xticks_rotation="vertical" if n > 6 else "horizontal",
    )
    ax.set_title("confusion matrix" + (f" (normalised over {normalize})" if normalize else ""))
    return fig


def pairs_grid(
    pairs: Sequence[tuple[ImageLike, ImageLike]],
    captions: Sequence[str] | None = None,
    ncols: int = 2,
    cell: float = 1.8,
) -> Figure:
    """Side-by-side image pairs with a caption each, e.g. an identity next to the one it is confused with."""
    if not len(pairs):
        raise ValueError("pairs_grid needs at least one pair.")
    ncols = min(ncols, len(pairs))
    nrows = -(-len(pairs) // ncols)
    fig = _new_figure((2 * cell * ncols, (cell + 0.4) * nrows))
    cells = fig.subfigures(nrows, ncols, squeeze=False).ravel()
    for i, sub in enumerate(cells):
        axes = sub.subplots(1, 2)
        for ax in axes:
            ax.axis("off")
        if i < len(pairs):
            for ax, image in zip(axes, pairs[i], strict=True):
                ax.imshow(to_display(image))
            if captions is not None:
                sub.suptitle(str(captions[i]), fontsize=8)
    return fig


def roc_curves(labels, scores: Mapping[str, Sequence[float]], log_far: bool = False,
               ax: Axes | None = None) -> Figure:
    """ROC curves of several scorers (name -> similarity scores) on the same pairs (``labels`` 1 genuine,
    0 impostor), AUC in the legend; ``log_far`` spreads out the low false-accept rates."""
    from sklearn.metrics import RocCurveDisplay

    fig, ax = _target(ax, (5.5, 4.5))
    for name, values in scores.items():
        RocCurveDisplay.from_predictions(np.asarray(labels), np.asarray(values), name=name, ax=ax,
                                         plot_chance_level=not log_far and name == next(iter(scores)))
    ax.set(xlabel="false accept rate", ylabel="true accept rate", title="ROC")
    if log_far:
        ax.set_xscale("log")
    return fig


def score_histograms(labels, scores, threshold: float | None = None, title: str = "", bins: int = 30,
                     ax: Axes | None = None) -> Figure:
    """Genuine and impostor score distributions (densities) and, if given, the decision threshold."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    fig, ax = _target(ax)
    edges = np.histogram_bin_edges(scores, bins=bins)
    for value, name, colour in ((1, "genuine", "tab:green"), (0, "impostor", "tab:red")):
        ax.hist(scores[labels == value], bins=edges, density=True, alpha=0.5, color=colour,
                label=f"{name} ({(labels == value).sum()})")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set(title=title, xlabel="score", ylabel="density")
    ax.legend(fontsize=8)
    return fig


def threshold_curve(curve: pd.DataFrame, threshold: float | None = None, title: str = "",
                    ax: Axes | None = None) -> Figure:
    """Open-set accuracy and the share sent to ``n000000`` against the threshold
    (``verification.threshold_curve``), with the chosen threshold marked."""
    fig, ax = _target(ax)
    ax.plot(curve["threshold"], curve["accuracy"], label="accuracy")
    ax.plot(curve["threshold"], curve["rejected"], linestyle=":", label="share mapped to n000000")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"chosen {threshold:.3f}")
    ax.set(title=title, xlabel="threshold on the nearest score", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    return fig


def confused_pairs_grid(confused: pd.DataFrame, gallery: pd.DataFrame, ncols: int = 3) -> Figure:
    """For each row of ``metrics.most_confused`` (names in ``true``/``predicted``), one image of the true
    identity next to one of the identity it was taken for (first image per identity in ``gallery``)."""
    first = gallery.groupby("identity")["path"].first()
    pairs = [(first[t], first[p]) for t, p in zip(confused["true"], confused["predicted"], strict=True)]
    captions = [f"{t} -> {p} ({n}x)" for t, p, n in confused[["true", "predicted", "count"]].itertuples(index=False)]
    return pairs_grid(pairs, captions, ncols=ncols)


# ---------------------------------------------------------------------------------------------- multi-task

def task_confusions(pred: pd.DataFrame, classes: Mapping[str, Sequence[str]], title: str = "") -> Figure:
    """Row-normalised confusion matrices of several tasks side by side from a predictions frame with
    ``<task>`` and ``pred_<task>`` index columns; ``classes`` maps each task to its class names."""
    sizes = [len(names) for names in classes.values()]
    fig, axes = _figure(1, len(classes), (sum(0.5 * n + 2.2 for n in sizes), max(3.6, 0.45 * max(sizes) + 2)))
    for ax, (task, names) in zip(axes, classes.items(), strict=True):
        confusion_matrix(pred[task], pred[f"pred_{task}"], labels=list(range(len(names))), normalize="true",
                         display_labels=list(names), ax=ax)
        ax.set_title(task)
    if title:
        fig.suptitle(title)
    return fig


def task_curves(
    histories: pd.DataFrame | Mapping[str, pd.DataFrame],
    metrics: Sequence[str] = ("gender_acc", "race_acc", "age_mae"),
    splits: Sequence[str] = ("train", "val"),
) -> Figure:
    """Loss and one panel per task metric over epochs, for one engine history or several (``{model: history}``
    side by side in colour); ``<split>_<metric>`` columns, train dashed and val solid."""
    histories = {"": histories} if isinstance(histories, pd.DataFrame) else dict(histories)
    panels = ["loss", *metrics]
    fig, axes = _figure(1, len(panels), (3.6 * len(panels), 3.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, (model, history) in zip(colours, histories.items(), strict=False):
        for ax, metric in zip(axes, panels, strict=True):
            for split in splits:
                column = f"{split}_{metric}"
                if column in history.columns and history[column].notna().any():
                    label = f"{model} {split}".strip()
                    style = "--" if split == "train" else "-"
                    ax.plot(history["epoch"], history[column], style, color=colour, marker="o", markersize=3,
                            label=label)
    for ax, metric in zip(axes, panels, strict=True):
        ax.set(title=metric.replace("_", " "), xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    return fig


def reliability_diagram(table: pd.DataFrame, ece: float | None = None, title: str = "",
                        ax: Axes | None = None) -> Figure:
    """Accuracy against confidence per bin from ``metrics.reliability`` (bars), the diagonal of perfect
    calibration, each bin's mean confidence (dots) and its count; ECE in the title when given."""
    fig, ax = _target(ax, (4.6, 4.2))
    centres, width = (table["lower"] + table["upper"]) / 2, table["upper"] - table["lower"]
    ax.bar(centres, table["accuracy"].fillna(0), width=width, edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    full = table[table["n"] > 0]
    ax.plot((full["lower"] + full["upper"]) / 2, full["confidence"], "o", color="tab:red", markersize=4,
            label="mean confidence")
    for x, acc, n in zip((full["lower"] + full["upper"]) / 2, full["accuracy"], full["n"], strict=True):
        ax.annotate(str(n), (x, acc), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    suffix = f" (ECE {ece:.3f})" if ece is not None else ""
    ax.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="confidence", ylabel="accuracy",
           title=f"{title}{suffix}".strip())
    ax.legend(fontsize=7, loc="upper left")
    return fig


def error_by_group(table: pd.DataFrame, value: str = "mae", title: str = "",
                   ax: Axes | None = None) -> Figure:
    """Bars of a per-group error from ``metrics.error_by_group`` (e.g. age MAE per true age bin), each
    labelled with its group size; the group is the table's first column."""
    fig, ax = _target(ax, (max(5.0, 0.6 * len(table) + 2), 3.6))
    labels = table.iloc[:, 0].astype(str)
    bars = ax.bar(labels, table[value])
    ax.bar_label(bars, labels=[f"n={n}" for n in table["n"]], fontsize=7)
    ax.set(title=title, xlabel=table.columns[0], ylabel=value)
    ax.tick_params(axis="x", labelrotation=45 if len(table) > 5 else 0)
    return fig


def prediction_grid(
    images: Sequence[ImageLike],
    truths: Sequence[str],
    predictions: Sequence[str],
    correct: Sequence[bool] | None = None,
    ncols: int = 6,
    cell: float = 2.0,
) -> Figure:
    """Images captioned ``true`` over ``predicted``: green where ``correct`` is true, red elsewhere."""
    titles = [f"true {t}\npred {p}" for t, p in zip(truths, predictions, strict=True)]
    fig = image_grid(images, titles, ncols=ncols, cell=cell)
    if correct is not None:
        for ax, ok in zip(fig.axes, correct, strict=False):  # the grid may have empty cells
            ax.title.set_color("tab:green" if ok else "tab:red")
    for ax in fig.axes:
        ax.title.set_fontsize(7)
    return fig
