"""CS 405 Kaggle competition (face-classification-deep-learning-cs-405): 7,000 identities, 20 images each."""
from __future__ import annotations

from pathlib import Path

from helpers.datasets.base import (
    FaceSet,
    class_folders,
    class_names,
    find_root,
    flat_folder,
    read_csv_checked,
    require,
)

TREE = """<root>/
├── dataset/
│   ├── train/<identity>/*.jpg      identities like n008171
│   └── test/*.jpg
└── sample_submission.csv           columns image_name,label"""


def read(root: str | Path) -> FaceSet:
    """train [path, identity, label] in ImageFolder order, test [path, id] with ``id`` the image name."""
    base = find_root(root, "dataset/train", TREE)
    train_dir, test_dir = base / "dataset" / "train", require(base / "dataset" / "test", TREE)
    sample = require(base / "sample_submission.csv", TREE)
    read_csv_checked(sample, ["image_name", "label"], nrows=1)
    classes = class_names(train_dir)
    splits = {"train": class_folders(train_dir, classes), "test": flat_folder(test_dir)}
    return FaceSet("cs405", base, splits, classes=classes, files={"sample_submission": sample})
