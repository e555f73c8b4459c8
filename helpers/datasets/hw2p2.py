"""CMU 11-785 HW2P2 (Spring 2024 style): identity classification, open-set verification and the pairs variant."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers.datasets.base import (
    FaceSet,
    LayoutError,
    class_folders,
    class_names,
    find_root,
    flat_folder,
    read_csv_checked,
    require,
)
from helpers.datasets.constants import HW2P2_CLS, HW2P2_PAIRS, HW2P2_VER

CLS_TREE = f"""<root>/
└── {HW2P2_CLS}/
    ├── train/<identity>/*.jpg      identities like n000123
    ├── dev/<identity>/*.jpg
    └── test/*.jpg"""

VER_TREE = f"""<root>/
└── {HW2P2_VER}/
    ├── known/<identity>/*.jpg
    ├── unknown_dev/*.jpg
    ├── unknown_test/*.jpg
    └── verification_dev.csv        column `label`: one row per unknown_dev image, in sorted file-name order"""

PAIRS_TREE = f"""<root>/
└── {HW2P2_PAIRS}/
    ├── *.jpg
    ├── val_pairs.txt               lines `{HW2P2_PAIRS}/a.jpg {HW2P2_PAIRS}/b.jpg 1` (paths relative to <root>)
    └── test_pairs.txt              lines `{HW2P2_PAIRS}/a.jpg {HW2P2_PAIRS}/b.jpg`"""

TREE = f"{CLS_TREE}\n{VER_TREE}\nor, in later terms,\n{PAIRS_TREE}"


def read_classification(root: str | Path) -> FaceSet:
    """train/dev [path, identity, label] (labels in ImageFolder order of train), test [path, id]."""
    base = find_root(root, HW2P2_CLS, CLS_TREE) / HW2P2_CLS
    train_dir, dev_dir, test_dir = (require(base / split, CLS_TREE) for split in ("train", "dev", "test"))
    classes = class_names(train_dir)
    splits = {"train": class_folders(train_dir, classes), "dev": class_folders(dev_dir, classes),
              "test": flat_folder(test_dir)}
    return FaceSet("hw2p2", base.parent, splits, classes=classes)


def _positions(folder: Path) -> pd.DataFrame:
    """Images of ``folder`` sorted by file name, ``id`` being the position in that order."""
    return flat_folder(folder).assign(id=lambda frame: range(len(frame)))


def read_verification(root: str | Path) -> FaceSet:
    """known [path, identity, label], unknown_dev [path, id, identity], unknown_test [path, id]."""
    base = find_root(root, HW2P2_VER, VER_TREE) / HW2P2_VER
    known_dir, dev_dir, test_dir, dev_csv = (
        require(base / name, VER_TREE) for name in ("known", "unknown_dev", "unknown_test", "verification_dev.csv"))
    dev = _positions(dev_dir)
    labels = read_csv_checked(dev_csv, ["label"], dtype={"label": str})
    if len(labels) != len(dev):
        raise ValueError(f"{dev_csv} has {len(labels)} rows but {dev_dir} holds {len(dev)} images; the rows "
                         f"must align with the sorted unknown_dev file names.")
    dev["identity"] = labels["label"].str.strip().to_numpy()
    splits = {"known": class_folders(known_dir), "unknown_dev": dev, "unknown_test": _positions(test_dir)}
    return FaceSet("hw2p2", base.parent, splits, classes=class_names(known_dir),
                   files={"verification_dev": dev_csv})


def _read_pairs_file(path: Path, base: Path, columns: list[str]) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if fields and len(fields) != len(columns):
            raise ValueError(f"{path}, line {number}: expected {len(columns)} fields ({' '.join(columns)}), "
                             f"found {line!r}.")
        if fields:
            rows.append(fields)
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("path1", "path2"):
        frame[column] = [str(base / name) for name in frame[column]]
    missing = sorted({p for column in ("path1", "path2") for p in frame[column] if not Path(p).is_file()})
    if missing:
        raise LayoutError(f"{len(missing)} image(s) named in {path} are missing, e.g. {missing[:3]}.", PAIRS_TREE)
    if "match" in frame:
        frame["match"] = pd.to_numeric(frame["match"]).astype("int64")
    return frame


def read_pairs(root: str | Path) -> FaceSet:
    """Pairs variant: val [path1, path2, match], test [path1, path2] (file order kept)."""
    base = find_root(root, HW2P2_PAIRS, PAIRS_TREE)
    files = {name: require(base / HW2P2_PAIRS / f"{name}.txt", PAIRS_TREE) for name in ("val_pairs", "test_pairs")}
    splits = {"val": _read_pairs_file(files["val_pairs"], base, ["path1", "path2", "match"]),
              "test": _read_pairs_file(files["test_pairs"], base, ["path1", "path2"])}
    return FaceSet("hw2p2", base, splits, files=files)
