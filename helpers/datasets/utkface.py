"""UTKFace: age, gender and race parsed from file names ``<age>_<gender>_<race>_<date>.jpg[.chip.jpg]``.

The Kaggle archive (``jangedoo/utkface-new``) holds each face several times (``UTKFace/``, ``crop_part1/``,
``utkface_aligned_cropped/UTKFace/`` ...): the reader reads one ``UTKFace/`` folder when there is one, and
one copy of byte-identical files, so no face lands in both a train and a test split.
"""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from pathlib import Path

import pandas as pd

from helpers.datasets.base import FaceSet, LayoutError, class_names
from helpers.datasets.constants import UTKFACE_GENDERS, UTKFACE_RACES
from helpers.imageio import list_images

TREE = """<root>/
└── UTKFace/<age>_<gender>_<race>_<date>.jpg[.chip.jpg]   gender 0 male / 1 female; race 0..4
                                                         (White, Black, Asian, Indian, Others)
    (UTKFace/ may sit one folder down; without a UTKFace/ folder every image below <root> is read)"""

NAME = re.compile(r"^(\d+)_([01])_([0-4])_\d+")
FACES_FOLDER = "UTKFace"


def _faces_folder(base: Path) -> Path | None:
    """``UTKFace/`` in ``base`` or one visible folder below it (the archive's other folders repeat its faces)."""
    for folder in [base, *(base / name for name in class_names(base))]:
        if (folder / FACES_FOLDER).is_dir():
            return folder / FACES_FOLDER
    return None


def _duplicates(paths: list[Path]) -> set[Path]:
    """Files whose bytes equal those of a file earlier in sorted path order (only equal sizes are hashed)."""
    by_size: dict[int, list[Path]] = defaultdict(list)
    for path in sorted(paths):
        by_size[path.stat().st_size].append(path)
    seen, copies = set(), set()
    for group in (group for group in by_size.values() if len(group) > 1):
        for path in group:
            digest = hashlib.blake2b(path.read_bytes()).digest()
            if digest in seen:
                copies.add(path)
            seen.add(digest)
    return copies


def read(root: str | Path) -> FaceSet:
    """all [path, age, gender_idx, race_idx, gender, race], one row per distinct face.

    ``dropped`` counts names without the three labels (``irregular name``), byte-identical copies of a kept
    file (``duplicate content``, when any) and image files outside the ``UTKFace/`` folder that was read
    (``outside UTKFace/``, when any).
    """
    base = Path(root).expanduser().resolve()
    if not base.is_dir():
        raise LayoutError(f"Dataset folder {base} does not exist.", TREE)
    every = list_images(base)
    folder = _faces_folder(base)
    paths = every if folder is None else [path for path in every if path.is_relative_to(folder)]
    if not paths:
        raise LayoutError(f"No images found below {folder or base}.", TREE)
    named = [(path, match) for path in paths if (match := NAME.match(path.name))]
    copies = _duplicates([path for path, _ in named])
    rows = [(str(path), *map(int, match.groups())) for path, match in named if path not in copies]
    frame = pd.DataFrame(rows, columns=["path", "age", "gender_idx", "race_idx"]).astype(
        {"age": "int64", "gender_idx": "int64", "race_idx": "int64"})
    frame["gender"] = [UTKFACE_GENDERS[i] for i in frame["gender_idx"]]
    frame["race"] = [UTKFACE_RACES[i] for i in frame["race_idx"]]
    extra = {"duplicate content": len(copies), f"outside {FACES_FOLDER}/": len(every) - len(paths)}
    dropped = {"irregular name": len(paths) - len(named), **{k: n for k, n in extra.items() if n}}
    return FaceSet("utkface", base, {"all": frame}, dropped=dropped)
