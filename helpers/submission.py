"""Kaggle CSV writers that validate a submission before writing it.

Each writer builds a two-column DataFrame, checks it with :func:`validate` (header, ids, order, labels) and
writes it atomically to a new timestamped file ``<out_dir>/<task>_<YYYYmmdd-HHMMSS>.csv``; an existing file is
never overwritten. :func:`maybe_submit` sends a file to Kaggle only when asked, else prints the command.
"""
from __future__ import annotations

import math
import numbers
import shlex
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import pandas as pd

from helpers.datasets import constants
from helpers.files import atomic_write, fresh_path


class SubmissionError(ValueError):
    """A submission that Kaggle would reject or score wrongly."""


@dataclass(frozen=True)
class Spec:
    """What one competition expects: file name prefix, exact header and the kind of label."""

    task: str
    columns: tuple[str, str]
    kind: Literal["class_index", "identity", "score"]
    num_classes: int | None = None


HW2P2_CLASSIFICATION = Spec("hw2p2_classification", ("id", "label"), "class_index")
HW2P2_VERIFICATION = Spec("hw2p2_verification", ("id", "label"), "identity")
HW2P2_PAIRS = Spec("hw2p2_pairs", ("ID", "Label"), "score")
CS405 = Spec("cs405", ("image_name", "label"), "identity")


def _preview(items: Iterable, n: int = 5) -> str:
    """``a, b, c, ... (+k more)`` for error messages."""
    items = list(items)
    head = ", ".join(repr(x) for x in items[:n])
    return head + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def _as_list(values) -> list:
    """A plain list from a list, NumPy array or tensor (``tolist`` keeps Python scalars)."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def read_sample(path: str | Path) -> pd.DataFrame:
    """A ``sample_submission.csv`` read as text, so ids like ``00012.jpg`` or ``007`` keep their form."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Sample submission {path} not found; it ships in the competition's zip "
                                "(run notebooks/00_data_setup.ipynb).")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _check_header(df: pd.DataFrame, spec: Spec) -> None:
    found, expected = list(df.columns), list(spec.columns)
    if found != expected:
        raise SubmissionError(f"{spec.task}: wrong header: found {found}, expected {expected}.")


def _check_unique_ids(ids: list, spec: Spec) -> None:
    if missing := [i for i, x in enumerate(ids) if pd.isna(x)]:
        raise SubmissionError(f"{spec.task}: {len(missing)} empty id(s), first at rows {missing[:5]}.")
    if dupes := [x for x, n in Counter(ids).items() if n > 1]:
        raise SubmissionError(f"{spec.task}: {len(dupes)} duplicate id(s): {_preview(dupes)}.")


def _check_expected_ids(ids: list, expected: Sequence, spec: Spec, source: str) -> None:
    """Every expected id, no other, in the expected order (compared as text; ids are already unique)."""
    found, expected = [str(x) for x in ids], [str(x) for x in expected]
    found_set, expected_set = set(found), set(expected)
    if missing := [x for x in expected if x not in found_set]:
        raise SubmissionError(f"{spec.task}: {len(missing)} of {len(expected)} ids from {source} are "
                              f"missing: {_preview(missing)}.")
    if extra := [x for x in found if x not in expected_set]:
        raise SubmissionError(f"{spec.task}: {len(extra)} id(s) not in {source}: {_preview(extra)}.")
    for row, (got, want) in enumerate(zip(found, expected)):
        if got != want:
            raise SubmissionError(f"{spec.task}: wrong order: row {row} has id {got!r}, {source} expects "
                                  f"{want!r}; keep the order of {source}.")


def _check_class_index(labels: list, spec: Spec) -> None:
    if spec.num_classes is None:
        raise ValueError(f"{spec.task}: num_classes is required to validate class indices.")
    bad = [x for x in labels if isinstance(x, bool) or not isinstance(x, numbers.Integral)]
    if bad:
        raise SubmissionError(f"{spec.task}: {len(bad)} label(s) are not integer class indices: "
                              f"{_preview(bad)}; write logits.argmax(1) as ints.")
    if out := [x for x in labels if not 0 <= x < spec.num_classes]:
        raise SubmissionError(f"{spec.task}: {len(out)} class index(es) outside [0, {spec.num_classes - 1}]: "
                              f"{_preview(out)}.")


def _check_identity(labels: list, spec: Spec, vocabulary: Iterable[str] | None) -> None:
    if vocabulary is None:
        raise ValueError(f"{spec.task}: a vocabulary of identities is required to validate labels.")
    known = set(vocabulary)
    if unknown := [x for x in labels if x not in known]:
        raise SubmissionError(f"{spec.task}: {len(unknown)} row(s) have labels that are not known "
                              f"identities: {_preview(dict.fromkeys(unknown))}; "
                              "map class indices to names with classes[i].")


def _check_score(labels: list, spec: Spec) -> None:
    bad = [x for x in labels if isinstance(x, bool) or not isinstance(x, numbers.Real)]
    if bad:
        raise SubmissionError(f"{spec.task}: {len(bad)} score(s) are not numbers: {_preview(bad)}.")
    if rows := [i for i, x in enumerate(labels) if not math.isfinite(x)]:
        raise SubmissionError(f"{spec.task}: {len(rows)} score(s) are NaN or infinite, first at rows "
                              f"{rows[:5]}; check the embeddings for NaN.")


def validate(df: pd.DataFrame, spec: Spec, expected_ids: Sequence | None = None,
             vocabulary: Iterable[str] | None = None, sample: str | Path | None = None) -> None:
    """Raise :class:`SubmissionError` naming the first problem: header, ids, order or labels.

    ``expected_ids`` and ``sample`` (a ``sample_submission.csv``) each fix the exact ids and their order;
    ``vocabulary`` lists the allowed identity labels; ``spec.num_classes`` bounds class indices.
    """
    _check_header(df, spec)
    if df.empty:
        raise SubmissionError(f"{spec.task}: the submission has no rows.")
    id_col, label_col = spec.columns
    ids, labels = df[id_col].tolist(), df[label_col].tolist()
    _check_unique_ids(ids, spec)
    if expected_ids is not None:
        _check_expected_ids(ids, expected_ids, spec, "expected_ids")
    if sample is not None:
        sample_df = read_sample(sample)
        if list(sample_df.columns) != list(spec.columns):
            raise SubmissionError(f"{spec.task}: {sample} has header {list(sample_df.columns)}, "
                                  f"the writer expects {list(spec.columns)}.")
        _check_expected_ids(ids, sample_df[id_col].tolist(), spec, Path(sample).name)
    if spec.kind == "class_index":
        _check_class_index(labels, spec)
    elif spec.kind == "identity":
        _check_identity(labels, spec, vocabulary)
    else:
        _check_score(labels, spec)


def write_csv(df: pd.DataFrame, stem: str, out_dir: str | Path) -> Path:
    """Write ``df`` to a new ``out_dir/<stem>_<timestamp>.csv`` (claimed exclusively, then filled atomically):
    an earlier submission is never overwritten."""
    path = fresh_path(out_dir, stem, ".csv")
    try:
        atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    print(f"Wrote {len(df)} rows to {path}")
    return path


def _frame(spec: Spec, ids, labels) -> pd.DataFrame:
    ids, labels = _as_list(ids), _as_list(labels)
    if len(ids) != len(labels):
        raise SubmissionError(f"{spec.task}: {len(ids)} ids but {len(labels)} labels.")
    return pd.DataFrame({spec.columns[0]: pd.Series(ids, dtype=object),
                         spec.columns[1]: pd.Series(labels, dtype=object)})


def write_hw2p2_classification(ids: Sequence[str], labels: Sequence[int], out_dir: str | Path,
                               num_classes: int, expected_ids: Sequence[str] | None = None,
                               sample: str | Path | None = None) -> Path:
    """HW2P2 classification: ``id`` the test file name, ``label`` the ImageFolder class index."""
    spec = replace(HW2P2_CLASSIFICATION, num_classes=num_classes)
    df = _frame(spec, ids, labels)
    validate(df, spec, expected_ids, sample=sample)
    return write_csv(df, spec.task, out_dir)


def write_hw2p2_verification(ids: Sequence[int], labels: Sequence[str], out_dir: str | Path,
                             vocabulary: Iterable[str], expected_ids: Sequence[int] | None = None) -> Path:
    """HW2P2 verification: ``id`` the position in sorted unknown_test, ``label`` a known identity or
    ``n000000`` (no correspondence)."""
    df = _frame(HW2P2_VERIFICATION, ids, labels)
    validate(df, HW2P2_VERIFICATION, expected_ids, vocabulary=[*vocabulary, constants.HW2P2_NO_MATCH])
    return write_csv(df, HW2P2_VERIFICATION.task, out_dir)


def write_hw2p2_pairs(ids: Sequence[int], scores: Sequence[float], out_dir: str | Path,
                      expected_ids: Sequence[int] | None = None) -> Path:
    """HW2P2 pairs variant: ``ID`` the pair's position in test_pairs.txt, ``Label`` its similarity."""
    df = _frame(HW2P2_PAIRS, ids, scores)
    validate(df, HW2P2_PAIRS, expected_ids)
    return write_csv(df, HW2P2_PAIRS.task, out_dir)


def write_cs405(image_names: Sequence[str], identity_labels: Sequence[str], out_dir: str | Path,
                vocabulary: Iterable[str], expected_ids: Sequence[str] | None = None,
                sample: str | Path | None = None) -> Path:
    """CS 405: ``image_name`` the test file name, ``label`` an identity name like n008171."""
    df = _frame(CS405, image_names, identity_labels)
    validate(df, CS405, expected_ids, vocabulary=vocabulary, sample=sample)
    return write_csv(df, CS405.task, out_dir)


CLASSIFICATION_SLUGS = {"cs405": constants.CS405_SLUG, "hw2p2": constants.HW2P2_CLS}


def test_frame(faceset) -> pd.DataFrame:
    """A classification ``FaceSet``'s test split in submission order (``sample_submission.csv``'s when there
    is one, else the sorted file names the reader gives)."""
    test = faceset["test"]
    sample = faceset.files.get("sample_submission")
    if sample is None:
        return test
    order = read_sample(sample).iloc[:, 0]
    missing = set(order) - set(test["id"])
    if missing:
        raise SubmissionError(f"{sample} lists {len(missing)} image(s) missing from the test folder: "
                              f"{_preview(sorted(missing))}")
    return test.set_index("id").loc[order].reset_index()


def write_classification(faceset, ids: Sequence[str], predicted: Sequence[int], out_dir: str | Path) -> Path:
    """The Kaggle CSV of a classification ``FaceSet`` (``cs405`` or ``hw2p2``) from predicted class indices:
    identity names for CS 405 (in sample-submission order), ImageFolder indices for HW2P2."""
    predicted = [int(i) for i in _as_list(predicted)]
    if faceset.name == "cs405":
        return write_cs405(ids, [faceset.classes[i] for i in predicted], out_dir, vocabulary=faceset.classes,
                           sample=faceset.files.get("sample_submission"))
    if faceset.name == "hw2p2":
        return write_hw2p2_classification(ids, predicted, out_dir, num_classes=len(faceset.classes),
                                          expected_ids=faceset["test"]["id"].tolist())
    raise ValueError(f"No classification leaderboard for {faceset.name!r}; known: {sorted(CLASSIFICATION_SLUGS)}.")


def submit_command(csv_path: str | Path, slug: str, message: str) -> str:
    """The shell command that submits ``csv_path`` to the competition ``slug``."""
    return shlex.join(["kaggle", "competitions", "submit", slug, "-f", str(csv_path), "-m", message])


def maybe_submit(csv_path: str | Path, slug: str, message: str, enabled: bool) -> None:
    """Submit through :func:`helpers.kaggle_io.submit` when ``enabled``, else print the command to run."""
    if not Path(csv_path).is_file():
        raise FileNotFoundError(f"{csv_path} does not exist; write it with a write_* function first.")
    if enabled:
        from helpers.kaggle_io import submit

        submit(csv_path, slug, message)
    else:
        print("Submission not sent (enabled=False). To submit, run:\n  "
              + submit_command(csv_path, slug, message))
