"""Run logging: TensorBoard events in every run folder, read back; Weights & Biases optional and offline-safe."""
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import engine, tracking


def test_fit_writes_tensorboard_events_that_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=g), torch.randint(0, 2, (64,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    cfg = engine.TrainConfig(epochs=2, lr=1e-2, progress=False, device="cpu")
    history = engine.fit(nn.Linear(8, 2), loader, loader, cfg, tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train_loss", "val_acc", "lr"} <= set(events.Tags()["scalars"])
    logged = [(e.step, e.value) for e in events.Scalars("val_acc")]
    assert [step for step, _ in logged] == [1, 2]
    assert [value for _, value in logged] == pytest.approx(history.val_acc.tolist())


def test_tensorboard_can_be_turned_off(tmp_path):
    logger = tracking.RunLogger(tmp_path, tensorboard=False)
    logger.log({"loss": 1.0}, 1)
    logger.close()
    assert not (tmp_path / "tensorboard").exists()


def test_wandb_missing_is_a_notice_not_a_failure(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.warns(UserWarning, match="pip install wandb"):
        logger = tracking.RunLogger(tmp_path, tensorboard=False, wandb_project="faces")
    logger.log({"loss": 1.0, "nan": float("nan")}, 1)
    logger.close()
    assert logger.wandb is None


def test_wandb_without_a_key_logs_offline(tmp_path, monkeypatch):
    calls = {}

    class FakeRun:
        def log(self, values, step):
            calls.setdefault("log", []).append((values, step))

        def finish(self):
            calls["finish"] = True

    class FakeWandb:
        class api:
            api_key = None

        @staticmethod
        def init(**kwargs):
            calls["init"] = kwargs
            return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", FakeWandb)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.warns(UserWarning, match="offline"):
        logger = tracking.RunLogger(tmp_path, tensorboard=False, wandb_project="faces", config={"lr": 0.1})
    logger.log({"loss": 0.5, "nan": float("nan")}, 3)
    logger.close()
    assert calls["init"]["mode"] == "offline" and calls["init"]["dir"] == str(tmp_path)
    assert calls["log"] == [({"loss": 0.5}, 3)] and calls["finish"]
