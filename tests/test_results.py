"""The results registry: one JSON line per run, read back as a flat table; the newest entry per notebook."""
import pytest

from helpers import results


def test_registry_appends_and_loads():
    before = len(results.load())
    results.record("99_test", "tiny", {"val_acc": 0.5}, {"lr": 0.1}, {"seconds": 1.0})
    results.record("99_test", "tiny", {"val_acc": 0.75})
    table = results.load()
    assert len(table) == before + 2
    assert table["metrics.val_acc"].iloc[-2:].tolist() == [0.5, 0.75]


def test_latest_gives_the_newest_entry_of_each_notebook_in_the_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("FACES_RUNS", str(tmp_path))
    results.record("03_a", "small", {"val_acc": 0.2, "chance": 0.04}, timing={"train_seconds": 5.0})
    results.record("04_b", "resnet", {"val_acc": 0.4})
    results.record("03_a", "small", {"val_acc": 0.3, "chance": 0.04}, timing={"train_seconds": 6.0})
    monkeypatch.setenv("FACES_PROFILE", "full")
    results.record("03_a", "big", {"val_acc": 0.9})  # another profile: left out of the demo table
    monkeypatch.setenv("FACES_PROFILE", "demo")
    table = results.latest(["04_b", "03_a", "05_missing"], ["val_acc", "chance"], timing=["train_seconds"])
    assert table.index.tolist() == ["04_b", "03_a"]  # the order asked for; a notebook without entries dropped
    assert table.loc["03_a", "val_acc"] == 0.3 and table.loc["04_b", "val_acc"] == 0.4
    assert table.loc["03_a", "train_seconds"] == 6.0 and table.loc["03_a", "model"] == "small"
    assert {"model", "recorded", "val_acc", "chance", "train_seconds"} <= set(table.columns)
    full = results.latest(["03_a"], ["val_acc"], profile="full")
    assert full.loc["03_a", "model"] == "big" and full.loc["03_a", "val_acc"] == pytest.approx(0.9)
