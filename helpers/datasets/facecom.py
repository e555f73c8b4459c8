"""FACECOM (COMSYS Hackathon-5): Task A gender classification, Task B identities under distortions."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from helpers.datasets.base import FaceSet, class_folders, class_names, find_root, require
from helpers.datasets.constants import FACECOM_DISTORTIONS, FACECOM_GENDERS

log = logging.getLogger(__name__)

TREE_A = """<root>/
└── Task_A/
    ├── train/{female,male}/*.jpg
    └── val/{female,male}/*.jpg"""

TREE_B = f"""<root>/
└── Task_B/
    ├── train/<identity>/*.jpg                            clean images
    ├── train/<identity>/distortion/<stem>_<suffix>.jpg   suffix in {FACECOM_DISTORTIONS}
    └── val/<identity>/...                                other people, laid out as train"""

TREE = f"{TREE_A}\n{TREE_B}"
SPLITS = ("train", "val")


def read_task_a(root: str | Path) -> FaceSet:
    """train/val [path, gender, label] with classes ["female", "male"] (ImageFolder order)."""
    base = find_root(root, "Task_A", TREE_A) / "Task_A"
    splits = {split: class_folders(require(base / split, TREE_A), FACECOM_GENDERS).rename(
        columns={"identity": "gender"}) for split in SPLITS}
    return FaceSet("facecom", base.parent, splits, classes=list(FACECOM_GENDERS))


def _distortion(path: Path) -> str:
    """``clean`` for an identity's own images, else the suffix after the file name's last ``_``."""
    return "clean" if path.parent.name != "distortion" else path.stem.rsplit("_", 1)[-1].lower()


def _check_disjoint(folders: dict[str, Path]) -> None:
    """Raise ``ValueError`` naming the identities found in both train and val (a face in both is a leak)."""
    shared = sorted(set(class_names(folders["train"])) & set(class_names(folders["val"])))
    if shared:
        raise ValueError(f"FACECOM Task_B: {len(shared)} identit{'y is' if len(shared) == 1 else 'ies are'} in "
                         f"both train and val: {shared[:10]}{' ...' if len(shared) > 10 else ''}. Task B's val "
                         f"people must be unseen in training (a face in both leaks val into training); remove "
                         f"them from one split of {folders['train'].parent}, or re-download the dataset.")


def read_task_b(root: str | Path) -> FaceSet:
    """train/val [path, identity, label, distortion]: each split's own people (train and val are disjoint).

    Task B matches each distorted image against a clean gallery of people unseen in training, so each
    split's ``label`` indexes that split's sorted identities (its ImageFolder order, i.e.
    ``sorted(frame["identity"].unique())``): ``classes`` are the train identities (for an identity loss such
    as ArcFace), and a val label only says which val images show the same person. ``distortion`` is
    ``"clean"`` or the file's suffix (``constants.FACECOM_DISTORTIONS``; another suffix is kept with a
    warning). Raises ``ValueError`` when an identity is in both splits.
    """
    base = find_root(root, "Task_B", TREE_B) / "Task_B"
    folders = {split: require(base / split, TREE_B) for split in SPLITS}
    _check_disjoint(folders)
    splits = {}
    for split, folder in folders.items():
        frame = class_folders(folder)
        frame["distortion"] = pd.Series([_distortion(Path(p)) for p in frame["path"]], dtype=object)
        splits[split] = frame
    unknown = sorted(set().union(*(f["distortion"] for f in splits.values())) - {"clean", *FACECOM_DISTORTIONS})
    if unknown:
        log.warning("FACECOM Task_B: distortion suffix(es) %s are not in %s; kept as named.", unknown,
                    FACECOM_DISTORTIONS)
    return FaceSet("facecom", base.parent, splits, classes=class_names(folders["train"]))
