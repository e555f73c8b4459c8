"""Data-parallel engine.fit through accelerate, on 2 CPU processes (gloo): the same loss, weights and metrics as
one process with the same global batch, and one writer."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from accelerate import debug_launcher
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import distributed, engine
from helpers.engine import TrainConfig

N_CLASSES, DIM = 4, 16
TOLERANCE = 1e-5  # float32: two half-batch gradients averaged vs one full-batch gradient, summed in another order


def data() -> tuple[DataLoader, DataLoader]:
    centres = torch.randn(N_CLASSES, DIM, generator=torch.Generator().manual_seed(0)) * 1.5
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, N_CLASSES, (357,), generator=g)
    x = centres[y] + 2 * torch.randn(len(y), DIM, generator=g)
    train = DataLoader(TensorDataset(x[:256], y[:256]), batch_size=32, shuffle=True, generator=torch.Generator())
    return train, DataLoader(TensorDataset(x[256:], y[256:]), batch_size=20)  # 101: the last batch is ragged


def train(run_dir: Path) -> None:
    """What every process runs: the same model, data and config; returns nothing (the main process writes)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(DIM, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, N_CLASSES))
    cfg = TrainConfig(epochs=2, lr=5e-3, scheduler="cosine", warmup_epochs=0.5, weight_decay=0.01,
                      progress=False, device="cpu", channels_last=False)
    engine.fit(model, *data(), cfg, run_dir)


def run_both(folder: Path) -> None:
    """One process, then two through accelerate's CPU launcher (gloo)."""
    train(folder / "single")
    debug_launcher(train, (folder / "double",), num_processes=2)
    assert distributed.world_size() == 1  # the launcher's environment does not leak into this process


def test_two_processes_match_one(tmp_path):
    # a fresh interpreter: forking a test session whose OpenMP threads already ran can deadlock the children
    subprocess.run([sys.executable, __file__, str(tmp_path)], check=True, timeout=300)
    one = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    two = torch.load(tmp_path / "double" / "last.pt", weights_only=True)
    for key, value in one["model"].items():
        assert torch.allclose(value, two["model"][key], atol=TOLERANCE), key
    a, b = pd.read_csv(tmp_path / "single" / "history.csv"), pd.read_csv(tmp_path / "double" / "history.csv")
    for column in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert a[column].tolist() == pytest.approx(b[column].tolist(), abs=TOLERANCE), column
    assert json.loads((tmp_path / "double" / "config.json").read_text())["processes"] == 2
    written = sorted(p.name for p in (tmp_path / "double").iterdir())
    assert written == ["best.pt", "config.json", "history.csv", "last.pt", "tensorboard"]
    assert len(list((tmp_path / "double" / "tensorboard").iterdir())) == 1  # one writer


def test_single_context_passes_everything_through():
    single = distributed.context("cpu")
    assert isinstance(single, distributed.Single) and single.is_main and single.rank == 0
    tensor = torch.ones(2)
    assert single.reduce_sum(tensor) is tensor and single.gather(1, 2) == (1, 2)


if __name__ == "__main__":
    run_both(Path(sys.argv[1]))
