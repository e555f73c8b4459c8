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
from PIL import Image
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


def target_tensors(frame: pd.DataFrame, target: str | Sequence[str]) -> torch.Tensor | dict[str, torch.Tensor]:
    """The ``target`` column of ``frame`` as a tensor, or several columns as a dict of tensors (int64 for
    integer/bool columns, float32 for floats): the targets of ``FaceDataset`` and of the packed GPU path."""
    if isinstance(target, str):
        return _as_tensor(frame[target])
    return {c: _as_tensor(frame[c]) for c in target}


def _as_tensor(values: pd.Series) -> torch.Tensor:
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
        return torch.tensor(values.to_numpy(dtype=np.int64))
    if pd.api.types.is_float_dtype(values):
        return torch.tensor(values.to_numpy(dtype=np.float32))
    raise TypeError(f"Target column {values.name!r} has dtype {values.dtype}; use a numeric column "
                    f"(e.g. 'label' or an '*_idx' column).")


BLANK = Image.new("RGB", (64, 64), (128, 128, 128))  # stands in for an unreadable test image (on_error="blank")
MAX_REPLACEMENTS = 100  # random draws a training item may try before giving up
ROW_FIX = ("re-download it, or remove its row from the frame if it does not belong to a Kaggle test set (for a "
           "Kaggle test set, where every image needs a row, pass on_error='blank')")


def _shown(paths: Sequence, first: int = 5) -> str:
    return "; ".join(map(str, list(paths)[:first])) + (" ..." if len(paths) > first else "")


class FaceDataset(Dataset):
    """The images of a reader's DataFrame with their targets, as ``(image, target)``.

    ``target``: one column -> a tensor (int64 for integer/bool columns, float32 for floats); a list of
    columns -> a dict of such tensors; ``None`` -> the row's position in ``df`` (to map predictions back).
    ``frame`` holds the kept rows in dataset order (with ``df``'s index). Unreadable files:

    * ``train=True`` (the shuffled training loader only): files whose header cannot be read are dropped at
      construction with one warning; a file that fails to decode later is replaced by a random item drawn with
      ``torch.randint`` (so seeded workers stay reproducible). ``skipped`` counts replacements in this process
      (each loader worker counts its own); a warning is logged at the 1st, 10th, 100th... skip only.
    * ``train=False`` (default: evaluation, test predictions, embeddings): nothing is ever substituted. Bad
      headers raise ``BadImageError`` at construction naming them; a file that fails to decode raises when read.
    * ``on_error="blank"`` (only with ``train=False``; for a Kaggle test set, where every image needs a row):
      an unreadable image becomes a mid-grey 64x64 RGB image that keeps its row and target; ``unreadable``
      lists those files (bad headers at construction, decode failures as met in this process) and a warning
      names each.
    """

    def __init__(self, df: pd.DataFrame, transform: Callable | None = None,
                 target: str | list[str] | None = "label", train: bool = False, on_error: str = "raise"):
        if on_error not in ("raise", "blank") or (train and on_error == "blank"):
            raise ValueError(f"on_error={on_error!r}: use 'raise', or 'blank' with train=False (a Kaggle test set).")
        columns = [] if target is None else [target] if isinstance(target, str) else list(target)
        if any(c not in df.columns for c in ["path", *columns]):
            raise ColumnsError("FaceDataset frame", list(df.columns), ["path", *columns])
        self.transform, self.target, self.train, self.on_error = transform, target, train, on_error
        self.skipped, self.unreadable = 0, []
        _, bad = verify_headers(df["path"].tolist())
        keep = np.ones(len(df), dtype=bool)
        if bad and train:
            log.warning("Dropped %d of %d training images that cannot be opened. First ones: %s", len(bad),
                        len(df), _shown([f"{path} ({reason})" for path, reason in bad.items()]))
            keep = ~df["path"].isin(list(bad)).to_numpy()
        elif bad and on_error == "blank":
            self.unreadable = [str(path) for path in bad]
            log.warning("%d unreadable image(s) will be grey (on_error='blank'): %s", len(bad), _shown(bad))
        elif bad:
            shown = _shown([f"{path} ({reason})" for path, reason in bad.items()])
            raise BadImageError(next(iter(bad)), f"{len(bad)} of {len(df)} images cannot be opened: {shown}. "
                                                 f"For each one: {ROW_FIX}.")
        self.rows = np.flatnonzero(keep)
        self.frame = df.iloc[self.rows]
        self._paths = self.frame["path"].to_numpy(dtype=str)
        self._targets = {c: _as_tensor(self.frame[c]) for c in columns}

    def __len__(self) -> int:
        return len(self._paths)

    def _target(self, i: int):
        if self.target is None:
            return torch.tensor(self.rows[i])
        if isinstance(self.target, str):
            return self._targets[self.target][i]
        return {c: values[i] for c, values in self._targets.items()}

    def __getitem__(self, index: int):
        image, i = self._load(index)
        return (self.transform(image) if self.transform else image), self._target(i)

    def _load(self, index: int) -> tuple[Image.Image, int]:
        """The RGB image of item ``index`` and the item it belongs to (another one only when training)."""
        for _ in range(MAX_REPLACEMENTS):
            try:
                return load_rgb(self._paths[index]), index
            except BadImageError as err:
                if not self.train:
                    return self._stand_in(index, err), index
                self._count_skip(err)
                index = int(torch.randint(len(self), (1,)))
        raise RuntimeError(f"{MAX_REPLACEMENTS} images in a row could not be decoded (of {len(self)}); check the "
                           f"data with helpers.imageio.scan and re-download it.")

    def _stand_in(self, index: int, err: BadImageError) -> Image.Image:
        """The grey stand-in of an unreadable evaluation image (``on_error="blank"``), else the error."""
        if self.on_error != "blank":
            raise BadImageError(err.path, f"{err.reason}. Fix: {ROW_FIX}.", err.kind) from err
        if str(self._paths[index]) not in self.unreadable:
            self.unreadable.append(str(self._paths[index]))
            log.warning("%s; row %d gets a grey image (on_error='blank').", err, self.rows[index])
        return BLANK.copy()

    def _count_skip(self, err: BadImageError) -> None:
        """Count a training replacement; log the 1st, 10th, 100th... only."""
        self.skipped += 1
        if self.skipped == 10 ** (len(str(self.skipped)) - 1):
            log.warning("%s; replaced by a random training image (%d skip(s) in this dataset so far; logged at "
                        "1, 10, 100, ... skips).", err, self.skipped)


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
    """``(rest, holdout)`` with ``frac`` of the rows held out, per stratum of ``by``: :func:`stratified_split`
    with two parts. Rows keep ``df``'s order."""
    parts = stratified_split(df, {"rest": 1 - frac, "holdout": frac}, by, seed)
    return parts["rest"], parts["holdout"]
