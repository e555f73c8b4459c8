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
    ├── train/<identity>/*.jpg                          clean images
    ├── train/<identity>/distortion/<stem>_<type>.jpg   type in {FACECOM_DISTORTIONS}
    └── val/<identity>/...                              same as train"""

TREE = f"{TREE_A}\n{TREE_B}"
SPLITS = ("train", "val")
# Adjective suffixes seen in the released files (e.g. 001_frontal_foggy.jpg) -> the distortion's name.
ALIASES = {"blurred": "blur", "blurry": "blur", "foggy": "fog", "noisy": "noise", "rainy": "rain"}


def read_task_a(root: str | Path) -> FaceSet:
    """train/val [path, gender, label] with classes ["female", "male"] (ImageFolder order)."""
    base = find_root(root, "Task_A", TREE_A) / "Task_A"
    splits = {split: class_folders(require(base / split, TREE_A), FACECOM_GENDERS).rename(
        columns={"identity": "gender"}) for split in SPLITS}
    return FaceSet("facecom", base.parent, splits, classes=list(FACECOM_GENDERS))


def _distortion(path: Path) -> str:
    """``clean`` for an identity's own images, else the type named by the file's last ``_`` suffix."""
    if path.parent.name != "distortion":
        return "clean"
    suffix = path.stem.rsplit("_", 1)[-1].lower()
    return ALIASES.get(suffix, suffix)


def read_task_b(root: str | Path) -> FaceSet:
    """train/val [path, identity, label, distortion]; labels index the sorted identities of both splits
    (the same as ImageFolder on train when val's identities are a subset of train's)."""
    base = find_root(root, "Task_B", TREE_B) / "Task_B"
    folders = {split: require(base / split, TREE_B) for split in SPLITS}
    classes = sorted(set().union(*(class_names(folder) for folder in folders.values())))
    splits = {}
    for split, folder in folders.items():
        frame = class_folders(folder, classes)
        frame["distortion"] = pd.Series([_distortion(Path(p)) for p in frame["path"]], dtype=object)
        splits[split] = frame
    unknown = sorted(set().union(*(f["distortion"] for f in splits.values())) - {"clean", *FACECOM_DISTORTIONS})
    if unknown:
        log.warning("FACECOM Task_B: distortion type(s) %s are not in %s; kept as named.", unknown,
                    FACECOM_DISTORTIONS)
    return FaceSet("facecom", base.parent, splits, classes=classes)
