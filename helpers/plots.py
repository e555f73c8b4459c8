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
    recipe: str,
    image_size: int | None = None,
    n: int = 8,
    ncols: int = 8,
    seed: int | None = 0,
) -> Figure:
    """The original image followed by ``n`` train-time augmentations of ``recipe``."""
    original = image if isinstance(image, Image.Image) else load_rgb(image)
    views = transforms.preview(original, recipe, image_size, n=n, seed=seed)
    fig = image_grid([original, *views], ["original", *(f"{recipe} #{i + 1}" for i in range(n))], ncols=ncols)
    fig.suptitle(f"train augmentation '{recipe}'", fontsize=10)
    return fig


def steps_grid(
    image: Image.Image | str | Path, recipe: str, image_size: int | None = None, n: int = 4, seed: int = 0
) -> Figure:
    """One row per augmentation step of ``recipe`` (each applied alone), ``n`` draws per row."""
    previews = transforms.step_previews(image, recipe, image_size, n=n, seed=seed)
    images = [view for views in previews.values() for view in views]
    titles = [f"{name} #{i + 1}" for name, views in previews.items() for i in range(len(views))]
    fig = image_grid(images, titles, ncols=n)
    fig.suptitle(f"'{recipe}' steps one at a time", fontsize=10)
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
