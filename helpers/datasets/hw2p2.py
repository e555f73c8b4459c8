"""CMU 11-785 HW2P2 (Spring 2024 style): identity classification, open-set verification and the pairs variant."""
from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

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

log = logging.getLogger(__name__)

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
    └── verification_dev.csv        `label` and an image column (`image`, `file`, `id`...: file name or position
                                    in sorted unknown_dev); with `label` alone, rows follow sorted file names"""

PAIRS_TREE = f"""<root>/
└── {HW2P2_PAIRS}/
    ├── *.jpg
    ├── val_pairs.txt               lines `{HW2P2_PAIRS}/a.jpg {HW2P2_PAIRS}/b.jpg 1` (paths relative to <root>)
    └── test_pairs.txt              lines `{HW2P2_PAIRS}/a.jpg {HW2P2_PAIRS}/b.jpg`"""

TREE = f"{CLS_TREE}\n{VER_TREE}\nor, in later terms,\n{PAIRS_TREE}"


ID_COLUMNS = ("id", "image", "image_id", "image_name", "img", "img_name", "file", "filename", "file_name", "path")
REDOWNLOAD = ("The copy looks partial: re-download it (helpers.kaggle_io.download(..., force=True), or delete the "
              "folder and run notebooks/00_data_setup.ipynb).")


def _check_same_identities(train_dir: Path, dev_dir: Path) -> list[str]:
    """The identities of ``train_dir``, after checking ``dev_dir`` holds exactly the same ones.

    The submission's class index is the position in train/, so one identity folder missing from a partial
    copy would shift every later index by one.
    """
    found = {"train": class_names(train_dir), "dev": class_names(dev_dir)}
    problems = []
    for here, there in (("dev", "train"), ("train", "dev")):
        missing = sorted(set(found[here]) - set(found[there]))
        if missing:
            problems.append(f"{len(missing)} of the {len(found[here])} identity folders in {here}/ are missing "
                            f"from {there}/ (first: {missing[:5]})")
    if problems:
        raise LayoutError(f"{train_dir.parent}: train/ and dev/ must hold the same identities, but "
                          f"{'; '.join(problems)}. {REDOWNLOAD}", CLS_TREE)
    return found["train"]


def _competition_folder(root: str | Path, name: str, tree: str) -> Path:
    """``<root>/<name>``, or ``<root>/<name>/<name>`` where the archive repeats its top folder (as a Kaggle
    input mount often does)."""
    base = find_root(root, name, tree) / name
    return base / name if (base / name).is_dir() else base


def read_classification(root: str | Path) -> FaceSet:
    """train/dev [path, identity, label] (labels in ImageFolder order of train), test [path, id]; train/ and
    dev/ must hold the same identities (a ``LayoutError`` otherwise)."""
    base = _competition_folder(root, HW2P2_CLS, CLS_TREE)
    train_dir, dev_dir, test_dir = (require(base / split, CLS_TREE) for split in ("train", "dev", "test"))
    classes = _check_same_identities(train_dir, dev_dir)
    splits = {"train": class_folders(train_dir, classes), "dev": class_folders(dev_dir, classes),
              "test": flat_folder(test_dir)}
    return FaceSet("hw2p2", base.parent, splits, classes=classes)


def _positions(folder: Path) -> pd.DataFrame:
    """Images of ``folder`` sorted by file name, ``id`` being the position in that order."""
    return flat_folder(folder).assign(id=lambda frame: range(len(frame)))


def _row_files(values: pd.Series, names: list[str], csv: Path) -> list[str]:
    """The unknown_dev file each CSV row names: a file name (folder prefix allowed) or an integer position."""
    text = values.fillna("").str.strip()
    if not text.str.fullmatch(r"\d+").all():
        return [PurePosixPath(value.replace("\\", "/")).name for value in text]
    stems = [Path(name).stem for name in names]
    if all(stem.isdigit() for stem in stems) and [int(stem) for stem in stems] != list(range(len(names))):
        raise ValueError(f"{csv}: column {values.name!r} holds integers, and the unknown_dev files are numbered "
                         f"but not 0..{len(names) - 1}, so a position and a file number could differ: write "
                         f"file names (e.g. {names[0]}) in that column.")
    return [names[int(v)] if int(v) < len(names) else f"position {v}" for v in text]


def _join_problems(keys: list[str], names: list[str]) -> list[str]:
    """What keeps ``keys`` (one file per CSV row) from naming each of ``names`` exactly once."""
    counts = pd.Series(keys, dtype=str).value_counts()
    twice = counts.index[counts > 1].tolist()
    no_row = sorted(set(names) - set(keys))
    unknown = sorted(set(keys) - set(names))
    return [f"{len(found)} {what} (e.g. {found[:3]})" for what, found in (
        ("unknown_dev image(s) have no row", no_row), ("row(s) name files not in unknown_dev", unknown),
        ("file(s) named more than once", twice)) if found]


def _dev_labels(csv: Path, names: list[str]) -> list[str]:
    """The ``label`` of each unknown_dev file (``names``, sorted), joined on the CSV's image column."""
    table = read_csv_checked(csv, ["label"], dtype=str)
    labels = table["label"].str.strip().tolist()
    id_columns = [c for c in table.columns if c.lower() in ID_COLUMNS]
    if id_columns:
        keys = _row_files(table[id_columns[0]], names, csv)
        problems = _join_problems(keys, names)
        if problems:
            raise ValueError(f"{csv}: {'; '.join(problems)}. Each unknown_dev image needs exactly one row. "
                             f"{REDOWNLOAD}")
        by_file = dict(zip(keys, labels))
        return [by_file[name] for name in names]
    if list(table.columns) != ["label"]:
        raise ValueError(f"{csv}: no column naming the image among {list(table.columns)} (accepted names: "
                         f"{list(ID_COLUMNS)}); rename the image column, or keep only `label`.")
    if len(labels) != len(names):
        raise ValueError(f"{csv} has {len(labels)} rows but unknown_dev holds {len(names)} images; the rows "
                         f"must align with the sorted unknown_dev file names.")
    log.warning("%s has only a `label` column: its rows are matched to the sorted unknown_dev files by position. "
                "Add an image column (e.g. `image` with file names) to join by file name.", csv)
    return labels


def read_verification(root: str | Path) -> FaceSet:
    """known [path, identity, label], unknown_dev [path, id, identity], unknown_test [path, id]; unknown_dev
    labels come from verification_dev.csv joined on its image column (by position with `label` alone)."""
    base = _competition_folder(root, HW2P2_VER, VER_TREE)
    known_dir, dev_dir, test_dir, dev_csv = (
        require(base / name, VER_TREE) for name in ("known", "unknown_dev", "unknown_test", "verification_dev.csv"))
    dev = _positions(dev_dir)
    dev["identity"] = _dev_labels(dev_csv, [Path(path).name for path in dev["path"]])
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
