"""Exploratory data analysis of a face set: counts per identity, class and attribute, sizes, duplicates."""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from helpers.imageio import BadImageError, load_rgb

_CHUNK = 1 << 20


def _require(df: pd.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"Columns {missing} not found; the table has {list(df.columns)}.")


def _sample(paths: Sequence, sample: int | None, seed: int) -> list:
    paths = list(paths)
    return paths if sample is None or len(paths) <= sample else random.Random(seed).sample(paths, sample)


def images_per_identity(df: pd.DataFrame, col: str = "identity") -> tuple[pd.Series, pd.Series]:
    """Images per identity (largest first) and their summary (count, mean, std, min, quartiles, max)."""
    _require(df, [col])
    counts = df[col].value_counts()
    return counts, counts.describe()


def class_balance(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """Count and fraction of each value of ``col``, largest first."""
    _require(df, [col])
    counts = df[col].value_counts(dropna=False)
    return pd.DataFrame({"count": counts, "fraction": counts / counts.sum()})


def attribute_balance(df: pd.DataFrame, cols: Sequence[str], normalize: bool | str = False) -> pd.DataFrame:
    """Cross-tabulation of ``cols`` (first column down, the others across) with totals.

    ``normalize`` as in ``pd.crosstab``: ``True``/``'all'``, ``'index'`` (rows sum to 1) or ``'columns'``.
    A single column gives its counts (or fractions).
    """
    cols = [cols] if isinstance(cols, str) else list(cols)
    _require(df, cols)
    if len(cols) == 1:
        return df[cols[0]].value_counts(normalize=bool(normalize)).to_frame()
    return pd.crosstab(df[cols[0]], [df[c] for c in cols[1:]], normalize=normalize, margins=True)


def image_sizes(paths: Sequence[str | Path], sample: int | None = 500, seed: int = 0) -> pd.DataFrame:
    """Width, height and mode of up to ``sample`` images, read from the file headers only."""
    rows = []
    for path in tqdm(_sample(paths, sample, seed), desc="image sizes", unit="img"):
        try:
            with Image.open(path) as image:
                rows.append((str(path), *image.size, image.mode))
        except (OSError, SyntaxError, ValueError) as err:
            raise BadImageError(
                path, f"has no readable image header ({err}); helpers.imageio.scan lists every bad file"
            ) from err
    return pd.DataFrame(rows, columns=["path", "width", "height", "mode"])


def _digest(path: Path) -> str:
    digest = hashlib.blake2b()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def duplicates(paths: Sequence[str | Path]) -> list[list[str]]:
    """Groups of byte-identical files (only files of equal size are hashed), largest group first."""
    by_size = defaultdict(list)
    for path in paths:
        by_size[Path(path).stat().st_size].append(str(path))
    candidates = [p for group in by_size.values() if len(group) > 1 for p in group]
    by_hash = defaultdict(list)
    for path in tqdm(candidates, desc="hashing", unit="file"):
        by_hash[_digest(Path(path))].append(path)
    groups = [sorted(group) for group in by_hash.values() if len(group) > 1]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def channel_stats(
    paths: Sequence[str | Path], sample: int | None = 500, image_size: int = 64, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """Per-channel (R, G, B) mean and std in [0, 1] over ``sample`` images resized to ``image_size``,
    e.g. for a dataset's own ``Normalize`` statistics."""
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for path in tqdm(_sample(paths, sample, seed), desc="channel stats", unit="img"):
        image = load_rgb(path).resize((image_size, image_size), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float64).reshape(-1, 3) / 255
        total += pixels.sum(0)
        total_sq += (pixels**2).sum(0)
        count += len(pixels)
    if count == 0:
        raise ValueError("channel_stats needs at least one image path.")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0))
    return {"mean": tuple(mean.round(4).tolist()), "std": tuple(std.round(4).tolist())}
