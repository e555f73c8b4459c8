"""CelebA aligned faces with 40 binary attributes (and identities), in torchvision's or the Kaggle layout."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers.datasets.base import FaceSet, find_root, read_csv_checked, require
from helpers.datasets.constants import CELEBA_ATTRIBUTES, CELEBA_PARTITIONS

TORCHVISION_TREE = """<root>/                              torchvision layout
├── img_align_celeba/*.jpg
├── list_attr_celeba.txt            line 1 the count, line 2 the 40 names, then `file v1 ... v40` (-1/1)
├── list_eval_partition.txt         `file 0|1|2` (train/valid/test)
└── identity_CelebA.txt             `file identity` (optional)"""

KAGGLE_TREE = """<root>/                              Kaggle mirror
├── img_align_celeba/img_align_celeba/*.jpg
├── list_attr_celeba.csv            image_id + the 40 attributes (-1/1)
└── list_eval_partition.csv         image_id,partition (0 train, 1 valid, 2 test)"""

TREE = f"{TORCHVISION_TREE}\nor\n{KAGGLE_TREE}"
_SPACES = {"sep": r"\s+", "header": None}


def _torchvision_tables(base: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    attributes = base / "list_attr_celeba.txt"
    with attributes.open() as lines:
        lines.readline()
        names = lines.readline().split()
    attrs = read_csv_checked(attributes, ["image_id", *CELEBA_ATTRIBUTES], skiprows=2,
                             names=["image_id", *names], **_SPACES)
    partition = read_csv_checked(require(base / "list_eval_partition.txt", TREE), ["image_id", "partition"],
                                 names=["image_id", "partition"], **_SPACES)
    return attrs, partition


def _kaggle_tables(base: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    attrs = read_csv_checked(base / "list_attr_celeba.csv", ["image_id", *CELEBA_ATTRIBUTES])
    partition = read_csv_checked(require(base / "list_eval_partition.csv", TREE), ["image_id", "partition"])
    return attrs, partition


def _images_dir(base: Path) -> Path:
    images = require(base / "img_align_celeba", TREE)
    return images / "img_align_celeba" if (images / "img_align_celeba").is_dir() else images


def read(root: str | Path) -> FaceSet:
    """train/valid/test [path, image_id, identity (if identity_CelebA.txt is present), 40 attributes 0/1]."""
    base = find_root(root, ("list_attr_celeba.txt", "list_attr_celeba.csv"), TREE)
    torchvision_layout = (base / "list_attr_celeba.txt").is_file()
    attrs, partition = (_torchvision_tables if torchvision_layout else _kaggle_tables)(base)
    attrs[CELEBA_ATTRIBUTES] = (attrs[CELEBA_ATTRIBUTES] > 0).astype("int64")
    frame = attrs.merge(partition, on="image_id", validate="one_to_one")
    id_file = base / "identity_CelebA.txt"
    if id_file.is_file():
        identities = pd.read_csv(id_file, names=["image_id", "identity"], **_SPACES)
        frame = frame.merge(identities, on="image_id", validate="one_to_one")
    images = _images_dir(base)
    frame.insert(0, "path", [str(images / name) for name in frame["image_id"]])
    columns = ["path", "image_id", *(["identity"] if "identity" in frame else []), *CELEBA_ATTRIBUTES]
    splits = {name: frame.loc[frame["partition"] == code, columns].reset_index(drop=True)
              for code, name in CELEBA_PARTITIONS.items()}
    files = {"attributes": base / ("list_attr_celeba.txt" if torchvision_layout else "list_attr_celeba.csv")}
    if id_file.is_file():
        files["identities"] = id_file
    return FaceSet("celeba", base, splits, files=files)
