"""Training engine shared by every notebook: ``fit``, ``fit_stages``, ``evaluate`` and ``predict``.

One loop (d2l's habit) with timm's training habits: per-part learning rates and no weight decay on norms and
biases (:mod:`helpers.optim`), warm-up then cosine or another decay, label smoothing, gradient clipping and
accumulation, AMP (bf16 where supported, else fp16 with a GradScaler), channels_last, optional
``torch.compile`` and EMA weights. Every epoch writes ``last.pt`` (everything to resume) and ``best.pt``
(weights only) atomically (:mod:`helpers.checkpoint`), plus ``history.csv``, ``config.json`` and TensorBoard
events (:mod:`helpers.tracking`), all inside ``run_dir``; ``fit(..., resume=True)`` continues exactly.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import islice
from pathlib import Path

import pandas as pd
import torch
from timm.utils import ModelEmaV3
from torch import nn
from tqdm.auto import tqdm

from helpers import batches, checkpoint, config, distributed
from helpers.batches import AMP_MODES, resolve_amp
from helpers.checkpoint import load_checkpoint
from helpers.compiling import COMPILE_MODES, is_compile_mode, resolve_compile
from helpers.files import atomic_write
from helpers.models import freezing
from helpers.optim import base_lr, build_optimizer, build_scheduler
from helpers.tracking import RunLogger

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "train_images_per_s",
                   "time_s"]
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("cosine", "step", "multistep", "exponential", "plateau", "none")
SYNC_EVERY = 20  # batches between host syncs (NaN check, progress bar); fewer syncs keep the GPU busy


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped and ``last.pt`` still holds the last good epoch."""


@dataclass
class TrainConfig:
    """Everything ``fit`` needs besides the model and the data; saved next to the run as ``config.json``."""

    epochs: int = 10
    lr: float = 1e-3  # base learning rate (peak of the warm-up)
    optimizer: str = "adamw"  # "sgd" (momentum, nesterov), "adam" or "adamw"
    weight_decay: float = 0.05  # never applied to norms, biases and other 1-d parameters
    momentum: float = 0.9  # SGD only
    nesterov: bool = True  # SGD only (ignored when momentum is 0)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam/AdamW only
    param_groups: dict[str, float] = field(default_factory=dict)  # parameter-name prefix -> lr multiplier
    scheduler: str = "cosine"  # "cosine" (warm-up then cosine), "step", "multistep", "exponential",
    # "plateau" (ReduceLROnPlateau on `monitor`) or "none"
    warmup_epochs: float = 0.0  # linear warm-up, counted in optimizer steps; not with "plateau"
    min_lr: float = 0.0  # floor of every schedule, relative to `lr` (groups keep their multipliers)
    step_size: int = 30  # "step": epochs between decays
    gamma: float = 0.1  # decay factor of "step", "multistep", "exponential" (per epoch) and "plateau"
    milestones: tuple[int, ...] = ()  # "multistep": epochs at which the LR is multiplied by gamma
    patience: int = 5  # "plateau": epochs without improvement before decaying
    label_smoothing: float = 0.0
    clip_grad_norm: float | None = None
    accum_steps: int = 1  # gradient accumulation: one optimizer step every `accum_steps` batches
    amp: str = "auto"  # "auto" (bf16 if supported, else fp16 + GradScaler; off on CPU), "bf16", "fp16", "off"
    channels_last: bool = True
    compile: bool | str = False  # torch.compile the training forward; "auto": where it pays back (compiling.py)
    ema_decay: float | None = None  # EMA of the weights (timm ModelEmaV3 with warm-up); used for evaluation
    monitor: str = "val_acc"  # history column that picks best.pt ("...loss" columns are minimised)
    early_stopping: int | None = None  # stop after this many epochs without improvement of `monitor`
    seed: int = 0
    max_steps_per_epoch: int | None = None  # cap on batches per epoch, for quick runs
    progress: bool = True  # tqdm bar per epoch and a summary line
    tensorboard: bool = True  # event files in run_dir/tensorboard
    wandb: str | None = None  # a Weights & Biases project name to log to as well (optional)
    device: str | None = None  # None: config.device()

    def __post_init__(self) -> None:
        for name, allowed in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS), ("amp", AMP_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}; choose one of {allowed}.")
        if not is_compile_mode(self.compile):
            raise ValueError(f"TrainConfig.compile={self.compile!r}; choose one of {COMPILE_MODES}.")
        if self.epochs < 1 or self.accum_steps < 1:
            raise ValueError("TrainConfig.epochs and accum_steps must be at least 1.")
        if self.scheduler == "plateau" and self.warmup_epochs:
            raise ValueError("scheduler='plateau' has no warm-up; set warmup_epochs=0 or use 'cosine'.")
        if self.scheduler == "multistep" and not self.milestones:
            raise ValueError("scheduler='multistep' needs milestones, e.g. milestones=(30, 60).")
        self.betas = tuple(self.betas)
        self.milestones = tuple(self.milestones)
        self.param_groups = dict(self.param_groups)

    @property
    def mode(self) -> str:
        """"min" for a monitored loss or error, "max" for anything else (accuracy, AUC...)."""
        return "min" if self.monitor.endswith(("loss", "mae", "eer")) else "max"


# ------------------------------------------------------------------------------------ evaluate/predict

@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable, loss_fn: Callable | None = None, amp: str = "auto",
             channels_last: bool = True, progress: bool = False,
             metrics_fn: Callable[[object, object], Mapping[str, float]] | None = None,
             parallel: distributed.Single | None = None) -> dict:
    """Mean loss (default: cross-entropy), top-1 accuracy and sample count over ``loader``, in eval mode;
    with ``metrics_fn(outputs, targets)`` its metrics too, computed from this same pass. Under a multi-process
    ``parallel`` context every batch's outputs are gathered first (without the padding duplicates)."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    parallel = parallel or distributed.Single()
    device = batches.model_device(model)
    dtype = resolve_amp(amp, device)
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    n, counted, outputs_seen, targets_seen = 0, False, [], []
    for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
        inputs, targets = batches.split_batch(batch)
        inputs, targets = batches.to_device(inputs, device, channels_last), batches.to_device(targets, device)
        with batches.autocast(device, dtype):
            outputs, targets = parallel.gather(model(inputs), targets)
            loss = loss_fn(outputs, targets)
        size = batches.batch_size(outputs)
        totals[0] += loss.float() * size
        if (correct := batches.correct_count(outputs, targets)) is not None:
            totals[1] += correct
            counted = True
        if metrics_fn is not None:
            outputs_seen.append(batches.to_cpu(outputs))
            targets_seen.append(batches.to_cpu(targets))
        n += size
    model.train(was_training)
    loss_sum, correct_sum = totals.tolist()
    result = {"loss": loss_sum / max(n, 1), "acc": correct_sum / max(n, 1) if counted else math.nan, "n": n}
    if metrics_fn is not None and outputs_seen:
        extra = metrics_fn(batches.concat(outputs_seen), batches.concat(targets_seen))
        result.update({k: float(v) for k, v in extra.items()})
    return result


@torch.inference_mode()
def predict(model: nn.Module, loader: Iterable, return_targets: bool = False, amp: str = "auto",
            channels_last: bool = True, progress: bool = True):
    """Model outputs (float32, on CPU) for every batch of ``loader``, in order; optionally the targets too, on
    the CPU like the outputs (the GPU path's loader yields them on the device; tensors are concatenated,
    anything else such as file names becomes a list)."""
    device = batches.model_device(model)
    dtype = resolve_amp(amp, device)
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    for batch in tqdm(loader, desc="predict", leave=False, disable=not progress):
        inputs, target = batches.split_batch(batch)
        with batches.autocast(device, dtype):
            out = model(batches.to_device(inputs, device, channels_last))
        outputs.append(batches.to_cpu(out))
        targets.append(batches.to_cpu(target))
    model.train(was_training)
    logits = batches.concat(outputs)
    return (logits, batches.concat(targets)) if return_targets else logits


# ------------------------------------------------------------------------------------------------- fit

class _Trainer:
    """The mutable state of one run: model, optimizer, schedule, scaler, EMA; one epoch at a time."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, loss_fn: Callable | None, batches_per_epoch: int,
                 parallel: distributed.Single, run_images: int | None = None):
        self.cfg, self.parallel = cfg, parallel
        self.device = parallel.device
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        fmt = torch.channels_last if cfg.channels_last else torch.preserve_format
        self.model = model.to(self.device, memory_format=fmt)
        wrapped = parallel.wrap_model(self.model)
        self.compiled, self.compile_reason = resolve_compile(cfg.compile, self.device, run_images)
        self.train_model = torch.compile(wrapped) if self.compiled else wrapped
        self.loss_fn = loss_fn or nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.val_loss_fn = loss_fn or nn.CrossEntropyLoss()
        named = list(self.model.named_parameters())
        if isinstance(self.loss_fn, nn.Module):  # e.g. a loss with its own class centres
            self.loss_fn.to(self.device)
            named += [(f"loss_fn.{n}", p) for n, p in self.loss_fn.named_parameters()]
        self.params = [p for _, p in named if p.requires_grad]
        self.batches_per_epoch = batches_per_epoch
        self.steps_per_epoch = math.ceil(batches_per_epoch / cfg.accum_steps)
        self.optimizer = build_optimizer(named, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = (ModelEmaV3(self.model, decay=cfg.ema_decay, use_warmup=True)
                    if cfg.ema_decay is not None else None)
        self.step = 0

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "ema": self.ema.module.state_dict() if self.ema is not None else None,
                "loss_fn": self.loss_fn.state_dict() if isinstance(self.loss_fn, nn.Module) else None,
                "step": self.step}

    def load_state_dict(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            if ckpt["ema"] is None:
                raise ValueError("The checkpoint has no EMA weights; resume with ema_decay=None.")
            self.ema.module.load_state_dict(ckpt["ema"])
        if isinstance(self.loss_fn, nn.Module) and ckpt["loss_fn"] is not None:
            self.loss_fn.load_state_dict(ckpt["loss_fn"])
        self.step = ckpt["step"]

    def _optimizer_step(self) -> None:
        if self.cfg.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.model, step=self.step)
        if self.cfg.scheduler != "plateau":
            self.scheduler.step()

    def _check_finite(self, window: list, epoch: int) -> None:
        losses = torch.stack([loss for _, _, loss in window]).float()
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            batch, lr, loss = window[bad[0].item()]
            raise NonFiniteLossError(
                f"Loss became {loss.item()} at epoch {epoch}, step {batch} of {self.batches_per_epoch} "
                f"(lr {lr:.3g}); run_dir/last.pt still holds epoch {epoch - 1}. Try: a lower lr (e.g. /10) "
                "or a longer warm-up, clip_grad_norm=1.0, amp='bf16' or 'off', and check the inputs for "
                "NaN/inf (torch.isfinite(x).all()).")

    def train_epoch(self, loader: Iterable, epoch: int) -> dict:
        """One pass over ``loader`` (at most ``batches_per_epoch`` batches); the epoch's train metrics."""
        cfg, n_batches = self.cfg, self.batches_per_epoch
        self.model.train()
        freezing.frozen_norms_eval(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        seen, counted, window = 0, False, []
        bar = tqdm(total=n_batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and self.parallel.is_main))
        start = time.perf_counter()
        for i, batch in enumerate(islice(loader, n_batches)):
            inputs, targets = batches.split_batch(batch)
            inputs = batches.to_device(inputs, self.device, cfg.channels_last)
            targets = batches.to_device(targets, self.device)
            group_size = min(cfg.accum_steps, n_batches - i // cfg.accum_steps * cfg.accum_steps)
            lr = base_lr(self.optimizer)
            with batches.autocast(self.device, self.amp_dtype):
                outputs = self.train_model(inputs)
                loss = self.loss_fn(outputs, targets)
            self.scaler.scale(loss / group_size).backward()
            if (i + 1) % cfg.accum_steps == 0 or i + 1 == n_batches:
                self._optimizer_step()
            size = batches.batch_size(inputs)
            seen += size
            totals[0] += loss.detach().float() * size
            if (correct := batches.correct_count(outputs, targets)) is not None:
                totals[1] += correct
                counted = True
            window.append((i + 1, lr, loss.detach()))
            if len(window) == SYNC_EVERY or i + 1 == n_batches:
                self._check_finite(window, epoch)
                loss_sum, correct_sum = totals.tolist()
                bar.update(len(window))
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct_sum / seen:.3f}",
                                lr=f"{lr:.2e}", img_s=f"{seen / (time.perf_counter() - start):.0f}")
                window = []
        if window:  # a loader shorter than its stated length
            self._check_finite(window, epoch)
        bar.close()
        elapsed = time.perf_counter() - start
        loss_sum, correct_sum, seen = self.parallel.reduce_sum(
            torch.cat([totals, totals.new_tensor([seen])])).tolist()  # every process's share of the epoch
        return {"lr": lr, "train_loss": loss_sum / max(seen, 1),
                "train_acc": correct_sum / max(seen, 1) if counted else math.nan,
                "train_images_per_s": seen / elapsed}


def _batches_per_epoch(loader: Iterable, cfg: TrainConfig) -> int:
    try:
        n = len(loader)
    except TypeError:
        if cfg.max_steps_per_epoch is None:
            raise TypeError("train_loader has no length; set TrainConfig.max_steps_per_epoch.") from None
        return cfg.max_steps_per_epoch
    if n == 0:
        raise ValueError("train_loader yields no batches (empty dataset, or drop_last with too few samples).")
    return min(n, cfg.max_steps_per_epoch or n)


def _images_per_epoch(loader: Iterable, n_batches: int) -> int | None:
    """Training images per epoch and process (each process takes its part of every batch); None when the
    loader does not tell its batch size."""
    size = batches.loader_batch_size(loader)
    return None if size is None else n_batches * size // distributed.world_size()


def _seed_loader(loader: Iterable, seed: int) -> None:
    """Seed the loader so that an epoch's order (and, for a ``helpers.packed.DeviceLoader``, its on-device
    augmentation) depends only on ``seed``: ``loader.seed(seed)`` when it has one, else the generators of the
    loader and its samplers (``batches.seed_loader_generators``). Loaders without either shuffle from the
    global torch RNG, which checkpoints save and restore, so those resume exactly too (with ``num_workers=0``
    or non-persistent workers)."""
    if callable(getattr(loader, "seed", None)):
        loader.seed(seed)
    else:
        batches.seed_loader_generators(loader, seed)


def _is_better(value: float, best: float, mode: str) -> bool:
    if math.isnan(value):
        return False
    return math.isnan(best) or (value < best if mode == "min" else value > best)


def best_epoch(history: Sequence[Mapping], key: str, mode: str) -> tuple[float, int]:
    """Best value of ``key`` in ``history`` rows and its epoch (NaN, 0 when none); ties keep the first."""
    best, epoch = math.nan, 0
    for row in history:
        if _is_better(row.get(key, math.nan), best, mode):
            best, epoch = row[key], row["epoch"]
    return best, epoch


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    last = run_dir / "last.pt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"resume=True but {last} does not exist; start a fresh run (resume=False).")
    if not resume and last.exists():
        raise FileExistsError(f"{run_dir} already holds a run (last.pt). Continue it with resume=True, or "
                              "start a new one in a fresh folder from helpers.config.new_run_dir(name).")


def _warn_config_changes(saved: dict, cfg: TrainConfig) -> None:
    current = json.loads(json.dumps(asdict(cfg)))
    changed = {k: (saved.get(k), v) for k, v in current.items()
               if k not in ("epochs", "progress") and json.loads(json.dumps(saved.get(k))) != v}
    if changed:
        warnings.warn(f"Resuming with a changed TrainConfig (saved -> now): {changed}", stacklevel=3)


def _frame(history: list[dict]) -> pd.DataFrame:
    columns = list(dict.fromkeys(HISTORY_COLUMNS + [k for row in history for k in row]))
    return pd.DataFrame(history, columns=columns)


def fit(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None, cfg: TrainConfig,
        run_dir: str | Path, loss_fn: Callable | None = None, resume: bool = False,
        metrics_fn: Callable[[object, object], Mapping[str, float]] | None = None,
        meta: Mapping | None = None, on_epoch: Callable[[dict], None] | None = None) -> pd.DataFrame:
    """Train ``model`` and return its history (one row per epoch, columns ``HISTORY_COLUMNS`` + extras).

    Batches are ``(inputs, targets)``; targets are class indices or soft labels (MixUp/CutMix).
    ``loss_fn(outputs, targets)`` defaults to cross-entropy with ``cfg.label_smoothing`` (validation: plain
    cross-entropy); a loss module with parameters is trained along. ``metrics_fn(outputs, targets)`` adds
    columns each epoch (e.g. ``val_auc``) from the validation pass itself, which ``cfg.monitor`` can pick.
    ``on_epoch(row)`` sees each epoch's history row once its checkpoint is written; an exception it raises
    (e.g. ``optuna.TrialPruned``) stops training there. Without ``val_loader`` the monitor falls back to the train column (``val_acc`` -> ``train_acc``).

    ``run_dir`` receives ``last.pt``, ``best.pt`` (weights only), ``history.csv``, ``config.json`` (with
    ``meta``, e.g. the recipe and notebook parameters) and TensorBoard events; a fresh run refuses a folder
    that already has ``last.pt``. ``resume=True`` continues from ``last.pt`` (``cfg.epochs`` may grow; a run
    that finished returns its history at once) and reproduces the uninterrupted run, as the shuffling is
    re-seeded per epoch from ``cfg.seed``. Afterwards ``model`` holds the last epoch's raw weights;
    ``checkpoint.load_checkpoint(run_dir / "best.pt", model)`` restores the best ones (EMA weights when EMA
    was on). BatchNorm layers whose parameters are frozen stay in eval mode. On CUDA, fit turns on
    cudnn.benchmark.
    """
    run_dir = Path(run_dir)
    _check_run_dir(run_dir, resume)
    parallel = distributed.context(cfg.device)
    if parallel.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True) if resume else None
    n_batches = _batches_per_epoch(train_loader, cfg)
    per_epoch = _images_per_epoch(train_loader, n_batches)
    epochs_left = cfg.epochs - (len(ckpt["history"]) if ckpt else 0)
    trainer = _Trainer(model, cfg, loss_fn, n_batches, parallel, None if per_epoch is None else per_epoch * epochs_left)
    if cfg.compile and cfg.progress and parallel.is_main and epochs_left > 0:
        tqdm.write(f"torch.compile {'on' if trainer.compiled else 'off'} ({trainer.compile_reason})")
    loaders = (train_loader, parallel.loader(train_loader), parallel.loader(val_loader))
    if trainer.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    history: list[dict] = []
    if ckpt is not None:
        _warn_config_changes(ckpt["config"], cfg)
        trainer.load_state_dict(ckpt)
        history = ckpt["history"]
        checkpoint.set_rng_state(ckpt["rng"])
        if ckpt.get("stopped_early") or len(history) >= cfg.epochs:
            return _frame(history)
    else:
        config.seed_everything(cfg.seed + parallel.rank)  # per-process seeds for dropout and augmentation
    no_val = val_loader is None and cfg.monitor in ("val_acc", "val_loss")
    monitor = cfg.monitor.replace("val_", "train_", 1) if no_val else cfg.monitor
    if parallel.is_main:
        checkpoint.write_json(run_dir / "config.json", {
            "train_config": asdict(cfg), "meta": dict(meta or {}), "device": str(trainer.device),
            "processes": distributed.world_size(), "amp_dtype": str(trainer.amp_dtype),
            "batches_per_epoch": trainer.batches_per_epoch, "steps_per_epoch": trainer.steps_per_epoch,
            "compiled": trainer.compiled, "compile_reason": trainer.compile_reason,
            "model": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
            "loss_fn": repr(trainer.loss_fn), "monitor": monitor, "torch": torch.__version__})
    logger = RunLogger(run_dir, cfg.tensorboard, cfg.wandb, {**asdict(cfg), **dict(meta or {})},
                       enabled=parallel.is_main)
    try:
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            row = _run_epoch(trainer, loaders, epoch, metrics_fn, monitor)
            best, _ = best_epoch(history, monitor, cfg.mode)
            history.append(row)
            _, best_at = best_epoch(history, monitor, cfg.mode)
            stop = bool(cfg.early_stopping) and epoch - best_at >= cfg.early_stopping
            if cfg.scheduler == "plateau":
                trainer.scheduler.step(row[monitor])
            state = {**trainer.state_dict(), "epoch": epoch, "history": history, "rng": checkpoint.rng_state(),
                     "config": asdict(cfg), "metrics": row, "stopped_early": stop}
            is_best = _is_better(row[monitor], best, cfg.mode) or (math.isnan(best) and math.isnan(row[monitor]))
            if parallel.is_main:
                checkpoint.save_epoch(run_dir, state, is_best)
                logger.log(row, epoch)
                if cfg.progress:
                    tqdm.write(" ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, (int, float))))
            parallel.wait()
            if on_epoch is not None:
                on_epoch(row)
            if stop:
                break
    finally:
        logger.close()
    return _frame(history)


def fit_best(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None, cfg: TrainConfig,
             run_dir: str | Path, resume: bool = False, **kwargs) -> pd.DataFrame:
    """:func:`fit` (continuing ``run_dir`` when ``resume`` and it holds a checkpoint), then the best
    checkpoint's weights loaded into ``model``: what a notebook evaluates and submits."""
    run_dir = Path(run_dir)
    history = fit(model, train_loader, val_loader, cfg, run_dir, resume=resume and (run_dir / "last.pt").is_file(),
                  **kwargs)
    load_checkpoint(run_dir / "best.pt", model)
    return history


def _run_epoch(trainer: _Trainer, loaders: tuple, epoch: int, metrics_fn: Callable | None, monitor: str) -> dict:
    """Train one epoch, then validate: one history row. ``loaders`` are the original train loader and the
    train and validation loaders as this process iterates them; seeding makes every process shuffle alike."""
    cfg, (original, train_loader, val_loader) = trainer.cfg, loaders
    start = time.perf_counter()
    _seed_loader(train_loader if callable(getattr(train_loader, "seed", None)) else original, cfg.seed + epoch)
    row = {"epoch": epoch, **trainer.train_epoch(train_loader, epoch)}
    val = ({"loss": math.nan, "acc": math.nan} if val_loader is None else
           evaluate(trainer.eval_model, val_loader, trainer.val_loss_fn, cfg.amp, cfg.channels_last,
                    metrics_fn=metrics_fn, parallel=trainer.parallel))
    row.update(val_loss=val.pop("loss"), val_acc=val.pop("acc"))
    row.update({k: v for k, v in val.items() if k != "n"})
    row["time_s"] = time.perf_counter() - start
    if monitor not in row:
        raise KeyError(f"monitor={cfg.monitor!r} is not a history column; columns are {list(row)}.")
    return row


# ------------------------------------------------------------------------------------------------ stages

@dataclass(frozen=True)
class Stage:
    """A stretch of training with its own freezing and settings: ``freeze`` is a policy over the backbone
    (:mod:`helpers.models.freezing`), ``trainable`` optionally limits what trains outside it (parameter-name
    prefixes, e.g. ``("gender_head.",)``), ``overrides`` replaces ``TrainConfig`` fields for this stage (lr,
    param_groups, scheduler, monitor, early_stopping...), ``loss`` names the loss function (a key of the
    ``losses`` given to :func:`fit_stages`; None: the default) and ``data`` the loaders and metrics when
    those are given as mappings (a stage on one task's data, another on both)."""

    name: str
    epochs: int
    freeze: freezing.Policy = "full"
    trainable: tuple[str, ...] | None = None
    overrides: Mapping = field(default_factory=dict)
    loss: str | None = None
    data: str | None = None


def _for_stage(value, stage: Stage):
    """``value``, or its entry for ``stage.data`` when it is a mapping (loaders or metrics per stage)."""
    return value[stage.data] if isinstance(value, Mapping) else value


def fit_stages(model: nn.Module, train_loader, val_loader, cfg: TrainConfig, run_dir: str | Path,
               stages: Sequence[Stage], losses: Mapping[str, Callable] | None = None, resume: bool = False,
               metrics_fn=None, meta: Mapping | None = None) -> pd.DataFrame:
    """Train in stages (e.g. the head alone for 3 epochs, then the last 15 layers too), each one
    :func:`fit` in ``run_dir/stage_<i>`` with a fresh optimizer and schedule over the parameters then
    trainable, starting from the previous stage's final weights; ``resume=True`` skips finished stages and
    continues the interrupted one. ``train_loader``, ``val_loader`` and ``metrics_fn`` may be mappings keyed by
    ``Stage.data``. Afterwards ``model`` holds the best weights of the whole run by ``cfg.monitor`` (over the
    stages that monitor it), also saved as ``run_dir/best.pt``. Returns the joined history (epochs numbered
    on, plus ``stage``, ``stage_name`` and ``monitor`` columns), also written as ``run_dir/history.csv``."""
    run_dir, histories, done = Path(run_dir), [], 0
    for i, stage in enumerate(stages, 1):
        freezing.freeze(model, stage.freeze, stage.trainable)
        stage_cfg = replace(cfg, **{"epochs": stage.epochs, "seed": cfg.seed + done, **stage.overrides})
        stage_dir = run_dir / f"stage_{i}"
        history = fit(model, _for_stage(train_loader, stage), _for_stage(val_loader, stage), stage_cfg, stage_dir,
                      (losses or {}).get(stage.loss), resume=resume and (stage_dir / "last.pt").is_file(),
                      metrics_fn=_for_stage(metrics_fn, stage), meta={**dict(meta or {}), "stage": asdict(stage)})
        histories.append(history.assign(epoch=history["epoch"] + done, stage=i, stage_name=stage.name,
                                        monitor=stage_cfg.monitor))
        done += len(history)
    joined = pd.concat(histories, ignore_index=True)
    if distributed.context(cfg.device).is_main:
        _restore_overall_best(model, joined, cfg, run_dir)
        atomic_write(run_dir / "history.csv", lambda tmp: joined.to_csv(tmp, index=False))
    return joined


def _restore_overall_best(model: nn.Module, history: pd.DataFrame, cfg: TrainConfig, run_dir: Path) -> None:
    """Load the best stage's ``best.pt`` into ``model`` and link it as ``run_dir/best.pt`` (a hard link: no
    second copy on disk), its stage and epoch in ``run_dir/best.json``."""
    candidates = history[history["monitor"] == cfg.monitor]
    if candidates.empty:
        raise ValueError(f"No stage monitors {cfg.monitor!r}; the overall best checkpoint is undefined.")
    column = candidates[cfg.monitor]
    row = candidates.loc[column.idxmin() if cfg.mode == "min" else column.idxmax()]
    source = run_dir / f"stage_{int(row['stage'])}" / "best.pt"
    load_checkpoint(source, model)
    checkpoint.write_json(run_dir / "best.json", {"stage": int(row["stage"]), "epoch": int(row["epoch"]),
                                                  cfg.monitor: float(row[cfg.monitor])})
    atomic_write(run_dir / "best.pt", lambda tmp: _link_or_copy(source, tmp))


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(source, target)
