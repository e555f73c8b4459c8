"""Readers of every on-disk dataset layout, returning ``FaceSet``s, plus the shared Dataset/loader/split tools."""
from __future__ import annotations

from pathlib import Path

from helpers import config
from helpers.datasets import adience, celeba, cs405, facecom, fairface, hw2p2, utkface
from helpers.datasets.base import (
    ColumnsError,
    FaceDataset,
    FaceSet,
    LayoutError,
    class_folders,
    class_names,
    find_root,
    flat_folder,
    holdout_split,
    make_loader,
    read_csv_checked,
    stratified_split,
)
from helpers.datasets.constants import DATASET_DIRS

TREES = {"hw2p2": hw2p2.TREE, "cs405": cs405.TREE, "fairface": fairface.TREE, "adience": adience.TREE,
         "celeba": celeba.TREE, "facecom": facecom.TREE, "utkface": utkface.TREE}

__all__ = [
    "TREES",
    "ColumnsError",
    "FaceDataset",
    "FaceSet",
    "LayoutError",
    "adience",
    "celeba",
    "class_folders",
    "class_names",
    "cs405",
    "facecom",
    "fairface",
    "find_root",
    "flat_folder",
    "holdout_split",
    "hw2p2",
    "locate",
    "make_loader",
    "read_csv_checked",
    "stratified_split",
    "utkface",
]


def locate(name: str, root: str | Path | None = None) -> Path:
    """The folder of dataset ``name`` under ``root`` (default ``config.data_root()``); a clear error if absent."""
    if name not in DATASET_DIRS:
        raise KeyError(f"Unknown dataset {name!r}; known: {sorted(DATASET_DIRS)}.")
    folder = Path(root if root is not None else config.data_root()) / DATASET_DIRS[name]
    if not folder.is_dir():
        raise LayoutError(f"{name}: folder {folder} does not exist.", TREES[name])
    return folder
