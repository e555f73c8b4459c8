"""helpers.engine (and helpers.optim, helpers.checkpoint, helpers.batches) on small synthetic problems (CPU):
learning, the run folder, exact resume, NaN, schedules."""
import itertools
import json
import math
import shutil

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import batches, checkpoint, engine, optim
from helpers.engine import TrainConfig

N_CLASSES, DIM = 4, 16


pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n: int, seed: int) -> TensorDataset:
    """Gaussian blobs around fixed class centres: separable, so a model should reach high accuracy."""
    centres = torch.randn(N_CLASSES, DIM, generator=torch.Generator().manual_seed(0)) * 1.5
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, N_CLASSES, (n,), generator=g)
    return TensorDataset(centres[y] + torch.randn(n, DIM, generator=g), y)


def loaders(batch_size: int = 32, generator: bool = True, n_train: int = 256):
    train = DataLoader(blobs(n_train, 1), batch_size=batch_size, shuffle=True,
                       generator=torch.Generator() if generator else None)
    return train, DataLoader(blobs(256, 2), batch_size=64)


def mlp(dropout: float = 0.1, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(DIM, 32), nn.LayerNorm(32), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(32, N_CLASSES))


def quick(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "lr": 1e-2, "warmup_epochs": 0.5, "progress": False, **kw})


class NaNAt:
    """Cross-entropy that returns NaN on its ``at``-th training call (1-based; evaluation not counted)."""

    def __init__(self, at: int):
        self.at, self.calls = at, 0

    def __call__(self, outputs, targets):
        self.calls += torch.is_grad_enabled()
        loss = nn.functional.cross_entropy(outputs, targets)
        return loss * math.nan if self.calls == self.at else loss


class InterruptAt(NaNAt):
    """Cross-entropy that raises KeyboardInterrupt on its ``at``-th training call, like a stopped kernel."""

    def __call__(self, outputs, targets):
        self.calls += torch.is_grad_enabled()
        if self.calls == self.at:
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(outputs, targets)


def test_fit_learns_and_writes_the_run_folder(tmp_path):
    train, val = loaders()
    history = engine.fit(mlp(), train, val, quick(), tmp_path, meta={"recipe": "blobs", "size": 16})
    assert list(history.columns) == engine.HISTORY_COLUMNS
    assert history.epoch.tolist() == [1, 2, 3]
    assert history.val_acc.iloc[-1] > 0.9  # chance is 0.25
    assert history.train_loss.iloc[-1] < history.train_loss.iloc[0]
    assert (history.train_images_per_s > 0).all()
    assert {p.name for p in tmp_path.iterdir()} == {"last.pt", "best.pt", "history.csv", "config.json",
                                                     "tensorboard"}
    assert any((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["meta"] == {"recipe": "blobs", "size": 16} and saved["train_config"]["epochs"] == 3
    model = mlp()
    ckpt = engine.load_checkpoint(tmp_path / "best.pt", model)
    best = history.loc[history.val_acc.idxmax()]
    assert ckpt["epoch"] == best.epoch
    assert engine.evaluate(model, val)["acc"] == pytest.approx(best.val_acc)
    # best.pt keeps the weights only; last.pt everything a resume needs
    assert set(ckpt) == set(checkpoint.WEIGHT_KEYS)
    last = engine.load_checkpoint(tmp_path / "last.pt")
    assert {"optimizer", "scheduler", "scaler", "rng", "history", "step", "stopped_early"} <= set(last)
    assert last["epoch"] == 3 and len(last["history"]) == 3


def test_metrics_fn_sees_the_validation_pass_and_adds_columns(tmp_path):
    """metrics_fn(outputs, targets) gets the outputs and targets of the whole validation pass; its keys become
    history columns that the monitor can pick (an "...eer" column is minimised)."""
    train, val = loaders()
    seen = []

    def error_rate(outputs, targets):
        seen.append((outputs.shape, targets.clone()))
        return {"val_eer": (outputs.argmax(1) != targets).float().mean().item()}

    history = engine.fit(mlp(), train, val, quick(monitor="val_eer"), tmp_path, metrics_fn=error_rate)
    assert list(history.columns) == engine.HISTORY_COLUMNS + ["val_eer"]
    assert len(seen) == 3 and all(shape == (256, N_CLASSES) for shape, _ in seen)
    assert torch.equal(seen[0][1], val.dataset.tensors[1])
    assert history.val_eer.to_numpy() == pytest.approx(1 - history.val_acc.to_numpy())
    assert TrainConfig(monitor="val_eer").mode == "min" and TrainConfig(monitor="val_auc").mode == "max"
    best = history.loc[history.val_eer.idxmin()]
    assert engine.load_checkpoint(tmp_path / "best.pt")["epoch"] == best.epoch
    model = mlp()
    engine.load_checkpoint(tmp_path / "best.pt", model)
    assert engine.evaluate(model, val, metrics_fn=error_rate)["val_eer"] == pytest.approx(best.val_eer)


def test_best_epoch_picks_by_mode_and_keeps_the_first_tie():
    rows = [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.3}, {"epoch": 3, "val_loss": 0.3},
            {"epoch": 4, "val_loss": math.nan}, {"epoch": 5, "val_loss": 0.9}]
    assert engine.best_epoch(rows, "val_loss", "min") == (0.3, 2)
    assert engine.best_epoch(rows, "val_loss", "max") == (0.9, 5)
    best, epoch = engine.best_epoch([{"epoch": 1}], "val_loss", "min")
    assert math.isnan(best) and epoch == 0


def test_fit_best_ends_on_the_best_weights(tmp_path):
    """Epoch 1 trains at a sane rate; the scheduler then multiplies it by 1000 (clipped gradients keep the
    loss finite), which wrecks the model: fit_best leaves the model on the best epoch's weights, not the
    last's."""
    train, val = loaders()
    model = mlp()
    cfg = quick(epochs=3, optimizer="sgd", scheduler="multistep", milestones=(1,), gamma=1000.0,
                warmup_epochs=0, clip_grad_norm=1.0)
    history = engine.fit_best(model, train, val, cfg, tmp_path)
    assert history.val_acc.idxmax() == 0 and history.val_acc.iloc[-1] < history.val_acc.max() - 0.2
    assert engine.evaluate(model, val)["acc"] == pytest.approx(history.val_acc.max())


def quadrants() -> tuple[DataLoader, DataLoader]:
    """8x8 images whose bright quadrant is the class (4 classes): 256 to train (shuffled), 128 to validate."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (384,), generator=g)
    x = torch.randn(384, 3, 8, 8, generator=g) * 0.5
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1.5
    train = DataLoader(TensorDataset(x[:256], y[:256]), batch_size=32, shuffle=True, generator=torch.Generator())
    return train, DataLoader(TensorDataset(x[256:], y[256:]), batch_size=64)


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(64, 4))


def test_cnn_channels_last_learns_and_predicts(tmp_path):
    train, val = quadrants()
    model = cnn()
    history = engine.fit(model, train, val, quick(epochs=4, lr=5e-3, channels_last=True), tmp_path)
    assert history.val_acc.max() > 0.9
    logits, targets = engine.predict(model, val, return_targets=True, progress=False)
    assert logits.shape == (128, 4) and torch.equal(targets, val.dataset.tensors[1])
    assert (logits.argmax(1) == targets).float().mean() > 0.9


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_training_learns_and_saves_plain_weights(tmp_path):
    """compile=True (inductor on CPU): the CNN learns, and best.pt loads into an uncompiled model."""
    train, val = quadrants()
    history = engine.fit(cnn(), train, val, quick(epochs=4, lr=5e-3, compile=True, tensorboard=False), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["compiled"] is True
    assert history.val_acc.max() > 0.9  # chance is 0.25
    model = cnn()
    engine.load_checkpoint(tmp_path / "best.pt", model)
    assert engine.evaluate(model, val)["acc"] == pytest.approx(history.val_acc.max())


@pytest.mark.parametrize("generator", [True, False], ids=["loader-generator", "global-rng"])
def test_resume_equals_uninterrupted_run(tmp_path, generator):
    cfg = quick(epochs=4, scheduler="step", step_size=2, gamma=0.5, warmup_epochs=0)
    full = engine.fit(mlp(), *loaders(generator=generator), cfg, tmp_path / "full")
    cut = quick(epochs=2, scheduler="step", step_size=2, gamma=0.5, warmup_epochs=0)
    engine.fit(mlp(), *loaders(generator=generator), cut, tmp_path / "cut")
    resumed = engine.fit(mlp(seed=2), *loaders(generator=generator), cfg, tmp_path / "cut", resume=True)
    cols = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"]
    assert resumed[cols].to_numpy() == pytest.approx(full[cols].to_numpy(), abs=1e-6)


def test_resume_after_an_interrupt_mid_epoch(tmp_path):
    """Cosine schedule, EMA and accumulation: a run stopped during epoch 3 resumes to the same history."""
    cfg = quick(epochs=4, ema_decay=0.9, accum_steps=2, clip_grad_norm=1.0)
    train, val = loaders()
    full = engine.fit(mlp(), train, val, cfg, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):  # 8 batches per epoch: call 19 is epoch 3, batch 3
        engine.fit(mlp(), train, val, cfg, tmp_path / "cut", loss_fn=InterruptAt(19))
    assert engine.load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    resumed = engine.fit(mlp(seed=3), train, val, cfg, tmp_path / "cut", resume=True)
    cols = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"]
    assert resumed[cols].to_numpy() == pytest.approx(full[cols].to_numpy(), abs=1e-6)


def test_non_finite_loss_stops_with_advice_and_keeps_last_good_epoch(tmp_path):
    train, val = loaders()  # 8 batches per epoch: call 11 is epoch 2, step 3
    snapshots = []
    trained = mlp()

    def snapshot(outputs, targets) -> dict:  # runs after each epoch's training: the weights of that epoch
        snapshots.append({k: v.clone() for k, v in trained.state_dict().items()})
        return {}

    with pytest.raises(engine.NonFiniteLossError) as err:
        engine.fit(trained, train, val, quick(scheduler="none"), tmp_path, loss_fn=NaNAt(11),
                   metrics_fn=snapshot)
    message = str(err.value)
    assert "epoch 2" in message and "step 3 of 8" in message and "lr 0.01" in message
    assert "clip_grad_norm" in message and "amp" in message
    model = mlp()
    ckpt = engine.load_checkpoint(tmp_path / "last.pt", model)
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 1 and len(snapshots) == 1
    for name, value in model.state_dict().items():
        assert torch.equal(value, snapshots[0][name])


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path):
    train, val = loaders()
    engine.fit(mlp(), train, val, quick(epochs=1), tmp_path)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(FileExistsError, match="resume=True.*new_run_dir"):
        engine.fit(mlp(), train, val, quick(epochs=1), tmp_path)
    assert (tmp_path / "last.pt").read_bytes() == before
    with pytest.raises(FileNotFoundError, match="resume=True"):
        engine.fit(mlp(), train, val, quick(epochs=1), tmp_path / "empty", resume=True)


def _lrs(cfg: TrainConfig, steps_per_epoch: int = 2, metrics=None) -> list[float]:
    """LR at the start of each epoch when stepping the schedule like ``fit`` does."""
    optimizer = optim.build_optimizer(mlp().named_parameters(), cfg)
    scheduler = optim.build_scheduler(optimizer, cfg, steps_per_epoch)
    lrs = []
    for epoch in range(cfg.epochs):
        lrs.append(optim.base_lr(optimizer))
        for _ in range(steps_per_epoch):
            optimizer.step()
            if cfg.scheduler != "plateau":
                scheduler.step()
        if cfg.scheduler == "plateau":
            scheduler.step(metrics[epoch])
    return lrs


def test_schedulers_build_and_step():
    base = {"epochs": 6, "lr": 1.0, "progress": False}
    cosine = _lrs(TrainConfig(**base, scheduler="cosine", warmup_epochs=1, min_lr=0.01), steps_per_epoch=4)
    assert cosine[0] == pytest.approx(0.25) and cosine[1] == pytest.approx(1.0)
    assert all(a > b for a, b in itertools.pairwise(cosine[1:])) and cosine[-1] > 0.01
    assert _lrs(TrainConfig(**base, scheduler="step", step_size=2, gamma=0.5)) == [1, 1, .5, .5, .25, .25]
    assert _lrs(TrainConfig(**base, scheduler="multistep", milestones=(1, 4))) == pytest.approx(
        [1, .1, .1, .1, .01, .01])
    assert _lrs(TrainConfig(**base, scheduler="exponential", gamma=0.5)) == pytest.approx(
        [1, .5, .25, .125, .0625, .03125])
    assert _lrs(TrainConfig(**base, scheduler="none")) == [1.0] * 6
    plateau = _lrs(TrainConfig(**base, scheduler="plateau", patience=1, gamma=0.5, monitor="val_loss"),
                   metrics=[1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    assert plateau == [1, 1, 1, 1, .5, .5]
    with pytest.raises(ValueError, match="warm-up"):
        TrainConfig(scheduler="plateau", warmup_epochs=1)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lion")


def test_param_groups_skip_decay_on_norms_biases_and_scale_lrs():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.LayerNorm(8 * 4),
                          nn.Linear(32, 4))
    cfg = TrainConfig(lr=0.1, weight_decay=0.05, param_groups={"4.": 10.0})
    optimizer = optim.build_optimizer(model.named_parameters(), cfg)
    decay_of = {id(p): (g["weight_decay"], g["lr"]) for g in optimizer.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        wd, lr = decay_of[id(param)]
        assert wd == (0.05 if name.endswith("weight") and param.ndim > 1 else 0.0), name
        assert lr == pytest.approx(1.0 if name.startswith("4.") else 0.1), name
    assert optim.base_lr(optimizer) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="match no parameter"):
        optim.build_optimizer(model.named_parameters(), TrainConfig(param_groups={"head.": 2.0}))
    # a prefix whose parameters are all frozen (a head-only stage) is fine: those parameters are left out
    model[0].requires_grad_(False)
    groups = optim.param_groups(model.named_parameters(), TrainConfig(param_groups={"0.": 0.1, "4.": 10.0}))
    grouped = {id(p) for g in groups for p in g["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    assert {g["lr_scale"] for g in groups} == {1.0, 10.0}
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="No trainable parameter"):
        optim.param_groups(model.named_parameters(), TrainConfig())


def test_gradient_accumulation_matches_a_larger_batch(tmp_path):
    """SGD, no momentum: 2 accumulated batches of 8 equal one batch of 16 (56 samples: a short last group)."""
    cfg = {"epochs": 1, "lr": 0.1, "optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0,
           "scheduler": "none", "progress": False}
    results = []
    for batch_size, accum in ((16, 1), (8, 2)):
        model = mlp(dropout=0.0)
        train = DataLoader(blobs(56, 1), batch_size=batch_size, shuffle=True, generator=torch.Generator())
        engine.fit(model, train, None, TrainConfig(**cfg, accum_steps=accum), tmp_path / str(accum))
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    initial = torch.cat([p.detach().flatten() for p in mlp(dropout=0.0).parameters()])
    assert (results[0] - initial).abs().max() > 1e-3  # the weights moved
    assert torch.allclose(results[0], results[1], atol=1e-6)


def test_ema_weights_are_kept_and_evaluated(tmp_path):
    train, val = loaders()
    model = mlp()
    history = engine.fit(model, train, val, quick(ema_decay=0.9), tmp_path)
    ckpt = engine.load_checkpoint(tmp_path / "last.pt")
    assert any(not torch.equal(ckpt["ema"][k], ckpt["model"][k]) for k in ckpt["model"])
    ema_model, raw_model = mlp(), mlp()
    engine.load_checkpoint(tmp_path / "last.pt", ema_model)
    engine.load_checkpoint(tmp_path / "last.pt", raw_model, use_ema=False)
    assert engine.evaluate(ema_model, val)["loss"] == pytest.approx(history.val_loss.iloc[-1], rel=1e-5)
    assert engine.evaluate(raw_model, val)["loss"] != pytest.approx(history.val_loss.iloc[-1], rel=1e-5)
    assert history.val_acc.iloc[-1] > 0.9


def test_soft_label_accuracy_and_training(tmp_path):
    outputs = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.6, 0.0, 0.4]])  # argmax 0 and 0
    assert batches.correct_count(outputs, soft).item() == 1
    assert batches.correct_count(outputs, torch.tensor([0, 2])).item() == 2
    data = blobs(256, 1)
    x, y = data.tensors
    perm = torch.randperm(256, generator=torch.Generator().manual_seed(0))
    targets = 0.7 * nn.functional.one_hot(y, N_CLASSES) + 0.3 * nn.functional.one_hot(y[perm], N_CLASSES)
    train = DataLoader(TensorDataset(0.7 * x + 0.3 * x[perm], targets.float()), batch_size=32, shuffle=True)
    history = engine.fit(mlp(), train, loaders()[1], quick(), tmp_path)
    assert history.train_acc.iloc[-1] > 0.8
    assert history.val_acc.iloc[-1] > 0.85


def test_early_stopping_and_amp_resolution(tmp_path):
    train, val = loaders()
    history = engine.fit(mlp(), train, val, quick(epochs=10, lr=0.0, scheduler="none", early_stopping=2,
                                                  monitor="val_loss"), tmp_path)
    assert len(history) == 3  # epoch 1 is the best; epochs 2 and 3 do not improve on it
    assert engine.load_checkpoint(tmp_path / "last.pt")["stopped_early"] is True
    # a run that stopped early is finished: resuming it returns its history at once, without training
    before = (tmp_path / "last.pt").read_bytes()
    resumed = engine.fit(mlp(seed=5), train, val, quick(epochs=10, lr=0.0, scheduler="none", early_stopping=2,
                                                        monitor="val_loss"), tmp_path, resume=True)
    assert resumed.epoch.tolist() == [1, 2, 3] and (tmp_path / "last.pt").read_bytes() == before
    assert resumed.val_loss.to_numpy() == pytest.approx(history.val_loss.to_numpy())
    cpu = torch.device("cpu")
    assert batches.resolve_amp("auto", cpu) is None and batches.resolve_amp("off", cpu) is None
    assert batches.resolve_amp("bf16", cpu) is torch.bfloat16
    history = engine.fit(mlp(), train, val, quick(epochs=1, amp="bf16"), tmp_path / "bf16")
    assert history.val_acc.iloc[-1] > 0.5


def test_auto_amp_picks_fp16_on_pre_ampere_gpus(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # T4
    assert batches.resolve_amp("auto", cuda) == torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # H100
    assert batches.resolve_amp("auto", cuda) == torch.bfloat16
    assert batches.resolve_amp("auto", torch.device("cpu")) is None


def test_predict_returns_targets_through_the_same_cpu_move_as_outputs(monkeypatch):
    """The GPU path's loader yields targets on the device: ``predict`` must hand them back on the CPU like the
    outputs (notebook 10's prediction table called ``.numpy()`` on them). Spied on CPU: every target goes
    through ``batches.to_cpu``."""
    moved = []
    real = batches.to_cpu
    monkeypatch.setattr(batches, "to_cpu", lambda obj: moved.append(obj) or real(obj))
    x, y = torch.randn(10, DIM), torch.arange(10) % N_CLASSES
    engine.predict(mlp(), DataLoader(TensorDataset(x, y), batch_size=4), return_targets=True, progress=False)
    assert sum(isinstance(m, torch.Tensor) and m.dtype == torch.long for m in moved) == 3  # 3 target batches
