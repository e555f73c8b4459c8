"""Notebook parameters end to end: papermill-style overrides through ``python -m helpers.nbrun -p``, recorded in
the run's config.json and registry entry, and RESUME continuing a killed notebook-03 run to the same weights."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import config, nbrun

NOTEBOOK = config.REPO_ROOT / "notebooks" / "03_convnext_from_scratch.ipynb"
pytestmark = pytest.mark.notebook


def start(tmp: Path, *params: str) -> subprocess.Popen:
    """``python -m helpers.nbrun`` on notebook 03 with runs and submissions under ``tmp``, in its own process
    group (the kernel included) so that it can be killed like a disconnected session."""
    env = {**os.environ, "FACES_RUNS": str(tmp / "runs"), "FACES_SUBMISSIONS": str(tmp / "subs")}
    args = [sys.executable, "-m", "helpers.nbrun", str(NOTEBOOK), "--out", str(tmp / "out"), "--timeout", "600"]
    for name, value in zip(params[::2], params[1::2]):
        args += ["-p", name, value]
    return subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output.decode()[-3000:]


def run_folder(tmp: Path) -> Path:
    (folder,) = (tmp / "runs" / "03_convnext_from_scratch").iterdir()
    return folder


def test_parse_values_like_papermill():
    assert [nbrun.parse_value(v) for v in ("1", "1e-3", "None", "True", "cs405", "/a/b", "(1, 2)")] == [
        1, 1e-3, None, True, "cs405", "/a/b", (1, 2)]


def test_overrides_are_applied_and_recorded(tmp_path):
    finish(start(tmp_path, "EPOCHS", "1", "IMAGE_SIZE", "40"))
    (entry,) = [json.loads(line) for line in (tmp_path / "runs" / "results.jsonl").read_text().splitlines()]
    assert entry["settings"]["params"] == {"epochs": 1, "image_size": 40}
    assert entry["settings"]["train"]["epochs"] == 1 and entry["settings"]["image_size"] == 40
    meta = json.loads((run_folder(tmp_path) / "stage_1" / "config.json").read_text())["meta"]
    assert meta["params"] == {"epochs": 1, "image_size": 40} and meta["image_size"] == 40
    assert len(pd.read_csv(run_folder(tmp_path) / "stage_1" / "history.csv")) == 1


def test_resume_after_a_kill_reaches_the_uninterrupted_weights(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    reference = start(whole, "EPOCHS", "3")
    finish(reference)
    process = start(cut, "EPOCHS", "3")
    history = None
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        found = list((cut / "runs").glob("03_convnext_from_scratch/*/stage_1/history.csv"))
        if found and len(pd.read_csv(found[0])) >= 1:
            os.killpg(process.pid, signal.SIGKILL)  # the kernel dies with it, mid-epoch 2
            history = found[0]
            break
        time.sleep(0.05)
    process.wait()
    assert history is not None, "the run ended before it could be killed"
    folder = run_folder(cut)
    epochs_done = torch.load(folder / "stage_1" / "last.pt", weights_only=True)["epoch"]
    assert epochs_done < 3
    finish(start(cut, "EPOCHS", "3", "RESUME", str(folder)))
    expected = torch.load(run_folder(whole) / "stage_1" / "last.pt", weights_only=True)
    resumed = torch.load(folder / "stage_1" / "last.pt", weights_only=True)
    assert resumed["epoch"] == expected["epoch"] == 3
    for part in ("model", "ema"):
        for key, value in expected[part].items():
            assert torch.equal(value, resumed[part][key]), f"{part}.{key}"
    assert pd.read_csv(folder / "stage_1" / "history.csv").val_acc.tolist() == pytest.approx(
        pd.read_csv(run_folder(whole) / "stage_1" / "history.csv").val_acc.tolist())
