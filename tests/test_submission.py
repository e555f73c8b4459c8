"""Submission writers: validation catches malformed files; valid files round-trip; nothing is overwritten."""
import sys
import types
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import files, submission
from helpers.submission import SubmissionError

IDS = ["00000.jpg", "00001.jpg", "00002.jpg", "00003.jpg"]
IDENTITIES = ["n000001", "n000002", "n000003"]


def write_sample(tmp_path, header, ids, fill="0"):
    path = tmp_path / "sample_submission.csv"
    pd.DataFrame({header[0]: ids, header[1]: fill}).to_csv(path, index=False)
    return path


def written(out_dir):
    return sorted(p.name for p in out_dir.iterdir())


# --- valid files round-trip ---------------------------------------------------------------------------------

def test_classification_round_trip_with_sample(tmp_path):
    sample = write_sample(tmp_path, ["id", "label"], IDS)
    path = submission.write_hw2p2_classification(IDS, torch.tensor([3, 0, 2, 1]), tmp_path / "out", 4,
                                                 expected_ids=IDS, sample=sample)
    assert path.parent == tmp_path / "out" and path.name.startswith("hw2p2_classification_")
    assert path.read_text().splitlines()[0] == "id,label"
    back = pd.read_csv(path, dtype={"id": str})
    assert back["id"].tolist() == IDS and back["label"].tolist() == [3, 0, 2, 1]


def test_verification_accepts_known_identities_and_no_match(tmp_path):
    labels = ["n000002", "n000000", "n000003"]
    path = submission.write_hw2p2_verification([0, 1, 2], labels, tmp_path, IDENTITIES, expected_ids=range(3))
    back = pd.read_csv(path)
    assert list(back.columns) == ["id", "label"]
    assert back["id"].tolist() == [0, 1, 2] and back["label"].tolist() == labels


def test_pairs_round_trip_scores(tmp_path):
    scores = np.array([0.25, -0.5, 0.875], dtype=np.float32)
    path = submission.write_hw2p2_pairs([0, 1, 2], scores, tmp_path, expected_ids=[0, 1, 2])
    back = pd.read_csv(path)
    assert list(back.columns) == ["ID", "Label"]
    np.testing.assert_allclose(back["Label"], scores)


def test_cs405_round_trip_with_sample(tmp_path, capsys):
    sample = write_sample(tmp_path, ["image_name", "label"], IDS, fill="n000001")
    labels = ["n000003", "n000001", "n000001", "n000002"]
    path = submission.write_cs405(IDS, labels, tmp_path / "out", IDENTITIES, sample=sample)
    assert str(path) in capsys.readouterr().out
    back = pd.read_csv(path, dtype=str)
    assert list(back.columns) == ["image_name", "label"]
    assert back["image_name"].tolist() == IDS and back["label"].tolist() == labels


# --- the validator rejects malformed submissions ------------------------------------------------------------

def test_missing_id(tmp_path):
    with pytest.raises(SubmissionError, match=r"1 of 4 ids from expected_ids are missing: '00003\.jpg'"):
        submission.write_hw2p2_classification(IDS[:3], [0, 1, 2], tmp_path, 4, expected_ids=IDS)
    assert written(tmp_path) == []


def test_unexpected_id(tmp_path):
    with pytest.raises(SubmissionError, match=r"1 id\(s\) not in expected_ids: 'x\.jpg'"):
        submission.write_hw2p2_classification([*IDS, "x.jpg"], [0, 1, 2, 3, 0], tmp_path, 4, expected_ids=IDS)


def test_duplicate_id(tmp_path):
    ids = [IDS[0], IDS[1], IDS[1], IDS[3]]
    with pytest.raises(SubmissionError, match=r"1 duplicate id\(s\): '00001\.jpg'"):
        submission.write_hw2p2_classification(ids, [0, 1, 2, 3], tmp_path, 4)


def test_wrong_order(tmp_path):
    ids = [IDS[0], IDS[2], IDS[1], IDS[3]]
    with pytest.raises(SubmissionError, match=r"wrong order: row 1 has id '00002\.jpg', expected_ids expects "
                                              r"'00001\.jpg'"):
        submission.write_hw2p2_classification(ids, [0, 1, 2, 3], tmp_path, 4, expected_ids=IDS)


def test_unknown_label(tmp_path):
    with pytest.raises(SubmissionError, match=r"3 row\(s\) have labels that are not known identities: "
                                              r"'n999999', 7"):
        submission.write_cs405(IDS, ["n000001", "n999999", 7, "n999999"], tmp_path, IDENTITIES)


def test_wrong_header():
    df = pd.DataFrame({"ID": [0, 1], "label": ["n000001", "n000002"]})
    with pytest.raises(SubmissionError,
                       match=r"wrong header: found \['ID', 'label'\], expected \['id', 'label'\]"):
        submission.validate(df, submission.HW2P2_VERIFICATION, vocabulary=IDENTITIES)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_score(tmp_path, bad):
    with pytest.raises(SubmissionError, match=r"1 score\(s\) are NaN or infinite, first at rows \[1\]"):
        submission.write_hw2p2_pairs([0, 1, 2], [0.1, bad, 0.3], tmp_path)
    assert written(tmp_path) == []


def test_class_index_out_of_range(tmp_path):
    with pytest.raises(SubmissionError, match=r"2 class index\(es\) outside \[0, 3\]: 4, -1"):
        submission.write_hw2p2_classification(IDS, [0, 4, -1, 3], tmp_path, 4)


@pytest.mark.parametrize("bad", [1.5, 2.0, "2", True])
def test_class_index_must_be_integer(tmp_path, bad):
    with pytest.raises(SubmissionError, match="not integer class indices"):
        submission.write_hw2p2_classification(IDS, [0, bad, 1, 3], tmp_path, 4)


def test_sample_order_mismatch(tmp_path):
    sample = write_sample(tmp_path, ["image_name", "label"], list(reversed(IDS)), fill="n000001")
    with pytest.raises(SubmissionError, match=r"wrong order: row 0 has id '00000\.jpg', "
                                              r"sample_submission\.csv expects '00003\.jpg'"):
        submission.write_cs405(IDS, ["n000001"] * 4, tmp_path / "out", IDENTITIES, sample=sample)


def test_sample_header_mismatch(tmp_path):
    sample = write_sample(tmp_path, ["id", "label"], IDS)
    with pytest.raises(SubmissionError, match=r"has header \['id', 'label'\], the writer expects "
                                              r"\['image_name', 'label'\]"):
        submission.write_cs405(IDS, ["n000001"] * 4, tmp_path / "out", IDENTITIES, sample=sample)


def test_length_mismatch(tmp_path):
    with pytest.raises(SubmissionError, match="4 ids but 3 labels"):
        submission.write_hw2p2_classification(IDS, [0, 1, 2], tmp_path, 4)


# --- files are new, never overwritten -----------------------------------------------------------------------

def test_second_write_never_overwrites(tmp_path, monkeypatch):
    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2024, 1, 2, 3, 4, 5)

    monkeypatch.setattr(files, "datetime", FrozenClock)  # submission names files through files.fresh_path
    taken = tmp_path / "hw2p2_pairs_20240102-030405.csv"
    taken.write_text("keep me")
    first = submission.write_hw2p2_pairs([0, 1], [0.1, 0.2], tmp_path)
    second = submission.write_hw2p2_pairs([0, 1], [0.3, 0.4], tmp_path)
    assert first.name == "hw2p2_pairs_20240102-030405-1.csv"
    assert second.name == "hw2p2_pairs_20240102-030405-2.csv"
    assert taken.read_text() == "keep me"
    assert pd.read_csv(first)["Label"].tolist() == [0.1, 0.2]
    assert pd.read_csv(second)["Label"].tolist() == [0.3, 0.4]
    assert set(written(tmp_path)) == {taken.name, first.name, second.name}


def test_two_writes_give_two_files(tmp_path):
    first = submission.write_hw2p2_pairs([0, 1], [0.1, 0.2], tmp_path)
    second = submission.write_hw2p2_pairs([0, 1], [0.1, 0.2], tmp_path)
    assert first != second and first.is_file() and second.is_file()
    assert len(written(tmp_path)) == 2


# --- submitting ---------------------------------------------------------------------------------------------

def test_maybe_submit_disabled_prints_command(tmp_path, capsys, monkeypatch):
    calls = []
    fake = types.SimpleNamespace(submit=lambda *a: calls.append(a))
    monkeypatch.setitem(sys.modules, "helpers.kaggle_io", fake)
    path = submission.write_hw2p2_pairs([0], [0.5], tmp_path)
    submission.maybe_submit(path, "some-comp", "first try", enabled=False)
    assert f"kaggle competitions submit some-comp -f {path} -m 'first try'" in capsys.readouterr().out
    assert calls == []


def test_maybe_submit_enabled_calls_kaggle_io(tmp_path, monkeypatch):
    calls = []
    fake = types.SimpleNamespace(submit=lambda *a: calls.append(a))
    monkeypatch.setitem(sys.modules, "helpers.kaggle_io", fake)
    path = submission.write_hw2p2_pairs([0], [0.5], tmp_path)
    submission.maybe_submit(path, "some-comp", "msg", enabled=True)
    assert calls == [(path, "some-comp", "msg")]


def test_maybe_submit_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        submission.maybe_submit(tmp_path / "nope.csv", "some-comp", "msg", enabled=False)


def test_write_classification_follows_each_layout(tmp_path):
    from helpers import demo
    from helpers.datasets import cs405, hw2p2

    root = tmp_path / "data"
    cs = cs405.read(demo.make_cs405(root / "cs405"))
    test = submission.test_frame(cs)
    sample = submission.read_sample(cs.files["sample_submission"])
    assert test["id"].tolist() == sample["image_name"].tolist()
    path = submission.write_classification(cs, test["id"], [0] * len(test), tmp_path / "out")
    written = pd.read_csv(path)
    assert written.columns.tolist() == ["image_name", "label"] and set(written.label) == {cs.classes[0]}

    hw = hw2p2.read_classification(demo.make_hw2p2(root / "hw2p2"))
    ids = submission.test_frame(hw)["id"]
    path = submission.write_classification(hw, ids, [1] * len(ids), tmp_path / "out")
    assert pd.read_csv(path).columns.tolist() == ["id", "label"]
    with pytest.raises(submission.SubmissionError, match="order"):
        submission.write_classification(hw, ids[::-1].tolist(), [1] * len(ids), tmp_path / "out")
