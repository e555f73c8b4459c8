"""What every dataset reader shares: the ``FaceSet`` result, layout and column errors, folder-per-class
listing in ImageFolder order, the torch ``FaceDataset``/``DataLoader`` and reproducible stratified splits."""
from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset

from helpers import config
from helpers.imageio import BadImageError, list_images, load_rgb, verify_headers

log = logging.getLogger(__name__)

HOW_TO_GET = ("How to get it: run notebooks/00_data_setup.ipynb with Kaggle credentials (it downloads and "
              "unzips every dataset under config.data_root()), or set FACES_PROFILE=demo to use the "
              "synthetic twin of every layout.")
MAX_WRAPPERS = 2  # folders a zip may wrap around a dataset


class LayoutError(FileNotFoundError):
    """A dataset folder without the expected layout; the message shows the tree to build and how to get it."""

    def __init__(self, problem: str, tree: str = ""):
        self.problem, self.tree = problem, tree
        super().__init__(f"{problem}\n\nExpected layout:\n{tree}\n\n{HOW_TO_GET}" if tree else problem)


class ColumnsError(ValueError):
    """A table without the columns a reader needs; the message names the columns found and expected."""

    def __init__(self, source: str | Path, found: Sequence[str] = (), expected: Sequence[str] = ()):
        self.found, self.expected = list(found), list(expected)
        missing = [c for c in self.expected if c not in self.found]
        super().__init__(f"{source}: missing column(s) {missing}. Found columns: {self.found}; "
                         f"expected columns: {self.expected}.")


@dataclass(repr=False)
class FaceSet:
    """A dataset read from disk: one DataFrame per split (each with an absolute ``path`` column)."""

    name: str
    root: Path
    splits: dict[str, pd.DataFrame]
    classes: list[str] | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def __getitem__(self, split: str) -> pd.DataFrame:
        if split not in self.splits:
            raise KeyError(f"{self.name} has no split {split!r}; its splits are {list(self.splits)}.")
        return self.splits[split]

    def __repr__(self) -> str:
        sizes = {name: len(frame) for name, frame in self.splits.items()}
        classes = "" if self.classes is None else f", classes={len(self.classes)}"
        dropped = f", dropped={self.dropped}" if self.dropped else ""
        return f"FaceSet({self.name!r}, root={str(self.root)!r}, splits={sizes}{classes}{dropped})"


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name != "__MACOSX")


def find_root(root: str | Path, marker: str | Sequence[str], tree: str = "") -> Path:
    """The folder holding ``marker`` (a name or relative path; or any of several): ``root`` itself or a
    wrapper folder up to two levels below it, as unzipping often leaves."""
    root = Path(root).expanduser().resolve()
    markers = [marker] if isinstance(marker, str) else list(marker)
    if not root.is_dir():
        raise LayoutError(f"Dataset folder {root} does not exist.", tree)
    level = [root]
    for _ in range(MAX_WRAPPERS + 1):
        for folder in level:
            if any((folder / name).exists() for name in markers):
                return folder
        level = [sub for folder in level for sub in _subfolders(folder)]
    raise LayoutError(f"No {' or '.join(markers)} found in {root} or up to {MAX_WRAPPERS} folders below it.",
                      tree)


def require(path: Path, tree: str = "") -> Path:
    """``path`` if it exists, else a ``LayoutError`` showing the expected tree."""
    if not path.exists():
        raise LayoutError(f"Missing {path}.", tree)
    return path


def read_csv_checked(path: str | Path, required: Sequence[str], **kwargs) -> pd.DataFrame:
    """``pandas.read_csv`` that raises ``ColumnsError`` when a required column is absent."""
    frame = pd.read_csv(path, **kwargs)
    frame.columns = [str(c).strip() for c in frame.columns]
    if any(c not in frame.columns for c in required):
        raise ColumnsError(path, list(frame.columns), list(required))
    return frame


def class_names(folder: str | Path) -> list[str]:
    """Sorted visible sub-folder names: torchvision ImageFolder's class order."""
    return [p.name for p in _subfolders(Path(folder))]


def class_folders(folder: str | Path, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """``folder/<class>/**/image`` as a DataFrame [path, identity, label] in ImageFolder order.

    ``classes`` fixes the vocabulary (e.g. a dev split labelled with the train split's classes);
    by default it is the sorted sub-folder names of ``folder``.
    """
    folder = Path(folder).absolute()
    found = class_names(folder)
    vocabulary = found if classes is None else list(classes)
    unknown = sorted(set(found) - set(vocabulary))
    if unknown:
        raise ValueError(f"{folder}: {len(unknown)} class folder(s) outside the expected {len(vocabulary)} "
                         f"classes, e.g. {unknown[:5]}; remove them or read the folder with its own classes.")
    index = {name: i for i, name in enumerate(vocabulary)}
    rows = [(str(path), name, index[name]) for name in found for path in list_images(folder / name)]
    return pd.DataFrame(rows, columns=["path", "identity", "label"]).astype({"label": "int64"})


def flat_folder(folder: str | Path) -> pd.DataFrame:
    """Images directly in ``folder`` as [path, id] sorted by file name, ``id`` being the file name."""
    paths = list_images(Path(folder).absolute(), recursive=False)
    return pd.DataFrame({"path": [str(p) for p in paths], "id": [p.name for p in paths]})


def _as_tensor(values: pd.Series) -> torch.Tensor:
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
        return torch.tensor(values.to_numpy(dtype=np.int64))
    if pd.api.types.is_float_dtype(values):
        return torch.tensor(values.to_numpy(dtype=np.float32))
    raise TypeError(f"Target column {values.name!r} has dtype {values.dtype}; use a numeric column "
                    f"(e.g. 'label' or an '*_idx' column).")


class FaceDataset(Dataset):
    """The images of a reader's DataFrame with their targets, as ``(image, target)``.

    ``target``: one column -> a tensor (int64 for integer/bool columns, float32 for floats); a list of
    columns -> a dict of such tensors; ``None`` -> the row's position in ``df`` (to map predictions back).
    Files that are empty or unreadable are dropped at construction with one warning; a file that fails to
    decode later (truncated) is logged once and replaced by the next good item. ``frame`` holds the kept
    rows in dataset order (with ``df``'s index).
    """

    def __init__(self, df: pd.DataFrame, transform: Callable | None = None,
                 target: str | list[str] | None = "label"):
        columns = [] if target is None else [target] if isinstance(target, str) else list(target)
        if any(c not in df.columns for c in ["path", *columns]):
            raise ColumnsError("FaceDataset frame", list(df.columns), ["path", *columns])
        _, bad = verify_headers(df["path"].tolist())
        if bad:
            shown = "; ".join(f"{path} ({reason})" for path, reason in list(bad.items())[:5])
            log.warning("Dropped %d of %d images that cannot be opened. First ones: %s", len(bad), len(df), shown)
        self.rows = np.flatnonzero(~df["path"].isin(list(bad)).to_numpy())
        self.frame = df.iloc[self.rows]
        self.transform, self.target = transform, target
        self._paths = self.frame["path"].to_numpy(dtype=str)
        self._targets = {c: _as_tensor(self.frame[c]) for c in columns}
        self._broken: set[int] = set()

    def __len__(self) -> int:
        return len(self._paths)

    def _target(self, i: int):
        if self.target is None:
            return torch.tensor(self.rows[i])
        if isinstance(self.target, str):
            return self._targets[self.target][i]
        return {c: values[i] for c, values in self._targets.items()}

    def __getitem__(self, index: int):
        for offset in range(len(self)):
            i = (index + offset) % len(self)
            if i in self._broken:
                continue
            try:
                image = load_rgb(self._paths[i])
            except BadImageError as err:
                self._broken.add(i)
                log.warning("%s; using the next image instead.", err)
                continue
            return (self.transform(image) if self.transform else image), self._target(i)
        raise RuntimeError(f"None of the {len(self)} images could be decoded.")


def _seed_worker(worker_id: int) -> None:
    """Give NumPy and ``random`` in each loader worker the seed torch derived for it."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int | None = None,
                drop_last: bool = False, seed: int = 0, collate_fn: Callable | None = None) -> DataLoader:
    """A reproducible DataLoader: seeded shuffling and workers, pinned memory on CUDA, persistent workers."""
    workers = config.profile().num_workers if num_workers is None else num_workers
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, drop_last=drop_last,
                      collate_fn=collate_fn, pin_memory=torch.cuda.is_available(),
                      persistent_workers=workers > 0, worker_init_fn=_seed_worker, generator=generator)


def _strata(df: pd.DataFrame, by: str | Sequence[str] | None) -> np.ndarray:
    """An integer stratum per row (one per combination of the ``by`` columns; all 0 without ``by``)."""
    if by is None:
        return np.zeros(len(df), dtype=np.int64)
    columns = [by] if isinstance(by, str) else list(by)
    if any(c not in df.columns for c in columns):
        raise ColumnsError("split frame", list(df.columns), columns)
    return df.groupby(columns, sort=True, dropna=False).ngroup().to_numpy()


def stratified_split(df: pd.DataFrame, fractions: dict[str, float], by: str | Sequence[str] | None = None,
                     seed: int = 0) -> dict[str, pd.DataFrame]:
    """Split ``df`` into named parts (e.g. ``{"train": .7, "val": .15, "test": .15}``), reproducibly.

    Within each stratum of ``by`` every part gets the floor or ceiling of its share (systematic sampling
    from a random offset), so proportions hold per stratum and overall. Rows keep ``df``'s order.
    """
    shares = np.array(list(fractions.values()), dtype=float)
    if not len(shares) or (shares <= 0).any() or not np.isclose(shares.sum(), 1.0):
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(df))
    strata = _strata(df, by)[order]
    sizes = np.bincount(strata)
    position = pd.Series(strata).groupby(strata).cumcount().to_numpy()
    quantile = (position + rng.random(len(sizes))[strata]) / sizes[strata]
    edges = np.cumsum(shares)
    edges[-1] = np.inf
    part = np.searchsorted(edges, quantile, side="right")
    return {name: df.iloc[np.sort(order[part == k])] for k, name in enumerate(fractions)}


def holdout_split(df: pd.DataFrame, frac: float = 0.2, by: str | Sequence[str] | None = None,
                  seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rest, holdout)`` with ``frac`` of the rows held out, stratified by ``by`` (scikit-learn's
    ``train_test_split``; each stratum needs at least two rows). Rows keep ``df``'s order."""
    stratify = None if by is None else _strata(df, by)
    rest, holdout = train_test_split(np.arange(len(df)), test_size=frac, random_state=seed, stratify=stratify)
    return df.iloc[np.sort(rest)], df.iloc[np.sort(holdout)]
