"""UTKFace: age, gender and race parsed from file names ``<age>_<gender>_<race>_<date>.jpg[.chip.jpg]``."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from helpers.datasets.base import FaceSet, LayoutError
from helpers.datasets.constants import UTKFACE_GENDERS, UTKFACE_RACES
from helpers.imageio import list_images

TREE = """<root>/
└── **/<age>_<gender>_<race>_<date>.jpg[.chip.jpg]   gender 0 male / 1 female; race 0..4
                                                     (White, Black, Asian, Indian, Others)"""

NAME = re.compile(r"^(\d+)_([01])_([0-4])_\d+")


def read(root: str | Path) -> FaceSet:
    """all [path, age, gender_idx, race_idx, gender, race]; names without the three labels are counted in
    ``dropped["irregular name"]`` and skipped."""
    base = Path(root).expanduser().resolve()
    if not base.is_dir():
        raise LayoutError(f"Dataset folder {base} does not exist.", TREE)
    paths = list_images(base)
    if not paths:
        raise LayoutError(f"No images found below {base}.", TREE)
    rows = [(str(path), *map(int, match.groups())) for path in paths if (match := NAME.match(path.name))]
    frame = pd.DataFrame(rows, columns=["path", "age", "gender_idx", "race_idx"]).astype(
        {"age": "int64", "gender_idx": "int64", "race_idx": "int64"})
    frame["gender"] = [UTKFACE_GENDERS[i] for i in frame["gender_idx"]]
    frame["race"] = [UTKFACE_RACES[i] for i in frame["race_idx"]]
    return FaceSet("utkface", base, {"all": frame}, dropped={"irregular name": len(paths) - len(frame)})
