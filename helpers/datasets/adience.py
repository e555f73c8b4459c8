"""Adience: age group and gender of Flickr faces in five cross-validation folds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from helpers.datasets.base import FaceSet, find_root, read_csv_checked, require
from helpers.datasets.constants import ADIENCE_AGES, ADIENCE_COLUMNS, ADIENCE_FOLDS, ADIENCE_GENDERS

TREE = """<root>/
├── fold_0_data.txt ... fold_4_data.txt   tab-separated, header: user_id original_image face_id age gender
│                                         x y dx dy tilt_ang fiducial_yaw_angle fiducial_score
└── faces/<user_id>/coarse_tilt_aligned_face.<face_id>.<original_image>"""

REASONS = ["age None", "age irregular", "gender u/empty", "image missing"]


def _read_fold(csv: Path, faces: Path, fold: int, dropped: dict[str, int]) -> pd.DataFrame:
    """The usable rows of one fold; each dropped row is counted once, under its first reason."""
    frame = read_csv_checked(csv, ADIENCE_COLUMNS, sep="\t", dtype=str, keep_default_na=False)
    frame = frame.apply(lambda column: column.str.strip())
    paths = [str(faces / user / f"coarse_tilt_aligned_face.{face}.{image}")
             for user, face, image in zip(frame["user_id"], frame["face_id"], frame["original_image"])]
    reason = np.select([frame["age"].eq("None").to_numpy(), ~frame["age"].isin(ADIENCE_AGES).to_numpy(),
                        ~frame["gender"].isin(ADIENCE_GENDERS).to_numpy(),
                        ~np.array([Path(p).is_file() for p in paths], dtype=bool)],
                       REASONS, default="")
    for name, count in zip(*np.unique(reason[reason != ""], return_counts=True)):
        dropped[str(name)] += int(count)
    keep = reason == ""
    kept = frame[keep]
    return pd.DataFrame({
        "path": np.array(paths, dtype=object)[keep],
        "user_id": kept["user_id"].to_numpy(),
        "face_id": kept["face_id"].astype("int64").to_numpy(),
        "age": kept["age"].to_numpy(),
        "age_idx": pd.Categorical(kept["age"], categories=ADIENCE_AGES).codes.astype("int64"),
        "gender": kept["gender"].to_numpy(),
        "gender_idx": pd.Categorical(kept["gender"], categories=ADIENCE_GENDERS).codes.astype("int64"),
        "fold": fold,
    })


def read(root: str | Path) -> FaceSet:
    """fold_0..fold_4 [path, user_id, face_id, age, age_idx, gender, gender_idx, fold] with the 8 regular
    age groups and m/f only; ``dropped`` counts rows dropped per reason."""
    base = find_root(root, "fold_0_data.txt", TREE)
    faces = require(base / "faces", TREE)
    dropped = dict.fromkeys(REASONS, 0)
    splits = {f"fold_{k}": _read_fold(require(base / f"fold_{k}_data.txt", TREE), faces, k, dropped)
              for k in range(ADIENCE_FOLDS)}
    return FaceSet("adience", base, splits, dropped=dropped)
