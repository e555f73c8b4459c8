"""Readers of every on-disk dataset layout, returning ``FaceSet``s, plus the shared Dataset/loader/split tools."""
from __future__ import annotations

from pathlib import Path

from helpers import config, runtime
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
from helpers.datasets.constants import (
    CS405_SLUG,
    DATASET_DIRS,
    HW2P2_CLS,
    HW2P2_VER,
    KAGGLE_DATASETS,
    MARKERS,
)

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
    "find_input",
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


KAGGLE_MOUNTS = {"cs405": {CS405_SLUG}, **{name: {slug.split("/")[-1]} for name, slug in KAGGLE_DATASETS.items()}}


def _mounts(base: Path) -> list[Path]:
    """Folders Kaggle mounts inputs as: ``<base>/<slug>``, and ``<base>/competitions/<slug>`` or
    ``<base>/datasets/<owner>/<slug>`` in the newer layout."""
    def subfolders(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    nested = subfolders(base / "competitions") + [p for o in subfolders(base / "datasets") for p in subfolders(o)]
    return [p for p in subfolders(base) if p.name not in ("competitions", "datasets")] + nested


def _holds(folder: Path, name: str) -> bool:
    try:
        find_root(folder, MARKERS[name])
    except LayoutError:
        return False
    return True


def find_input(name: str) -> Path | None:
    """On Kaggle, the read-only input holding dataset ``name``: its known competition/dataset slug first,
    else the one attached input whose layout matches (several: an error listing them); None elsewhere."""
    base = runtime.kaggle_input()
    if runtime.host() != "kaggle" or not base.is_dir():
        return None
    mounts = _mounts(base)
    if name == "hw2p2":  # two competitions, each its own mount: their common parent is the dataset root
        return next((m.parent for m in mounts if m.name in (HW2P2_CLS, HW2P2_VER)), None)
    known = [m for m in mounts if m.name in KAGGLE_MOUNTS.get(name, ())]
    matches = known or [m for m in mounts if _holds(m, name)]
    if len(matches) > 1:
        raise LayoutError(f"{name}: several attached Kaggle inputs match its layout: {[str(m) for m in matches]}; "
                          "detach all but one, or set FACES_DATA to a folder holding the one to use.")
    return matches[0] if matches else None


def locate(name: str, root: str | Path | None = None) -> Path:
    """The folder of dataset ``name``: with ``root``, ``root/<name>``; else an attached Kaggle input
    (:func:`find_input`), else ``config.data_root()/<name>``; a clear error if absent."""
    if name not in DATASET_DIRS:
        raise KeyError(f"Unknown dataset {name!r}; known: {sorted(DATASET_DIRS)}.")
    if root is None and (found := find_input(name)) is not None:
        return found
    folder = Path(root if root is not None else config.data_root()) / DATASET_DIRS[name]
    if not folder.is_dir():
        where = f" (no attached input under {runtime.kaggle_input()} matched either)" if runtime.host() == "kaggle" else ""
        raise LayoutError(f"{name}: folder {folder} does not exist{where}.", TREES[name])
    return folder
