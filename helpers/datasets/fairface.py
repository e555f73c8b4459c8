"""FairFace: age bin, gender and race labels for face crops, with train and val CSVs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers.datasets.base import FaceSet, find_root, read_csv_checked, require
from helpers.datasets.constants import FAIRFACE_AGES, FAIRFACE_COLUMNS, FAIRFACE_GENDERS, FAIRFACE_RACES

TREE = """<root>/
├── fairface_label_train.csv        columns file,age,gender,race,service_test; file like train/1.jpg
├── fairface_label_val.csv
├── train/*.jpg
└── val/*.jpg"""

VOCABULARIES = {"age": FAIRFACE_AGES, "gender": FAIRFACE_GENDERS, "race": FAIRFACE_RACES}


def _encode(values: pd.Series, vocabulary: list[str], source: Path) -> pd.Series:
    """Index of each value in ``vocabulary``; an unknown value is an error naming the file and value."""
    codes = values.map({value: i for i, value in enumerate(vocabulary)})
    if codes.isna().any():
        unknown = sorted(map(str, values[codes.isna()].unique()))
        raise ValueError(f"{source}: column {values.name!r} has value(s) {unknown[:5]} outside the FairFace "
                         f"vocabulary {vocabulary}.")
    return codes.astype("int64")


def _read_split(csv: Path, base: Path) -> pd.DataFrame:
    text = {column: str for column in ("file", "age", "gender", "race")}
    frame = read_csv_checked(csv, FAIRFACE_COLUMNS, dtype=text)
    for column in text:
        frame[column] = frame[column].str.strip()
    images = find_root(base, frame["file"].iloc[0], TREE) if len(frame) else base
    frame.insert(0, "path", [str(images / name) for name in frame["file"]])
    for column, vocabulary in VOCABULARIES.items():
        frame[f"{column}_idx"] = _encode(frame[column], vocabulary, csv)
    return frame


def read(root: str | Path) -> FaceSet:
    """train/val [path, file, age, gender, race, service_test, age_idx, gender_idx, race_idx]."""
    base = find_root(root, "fairface_label_train.csv", TREE)
    files = {split: require(base / f"fairface_label_{split}.csv", TREE) for split in ("train", "val")}
    splits = {split: _read_split(csv, base) for split, csv in files.items()}
    return FaceSet("fairface", base, splits, files=files)
