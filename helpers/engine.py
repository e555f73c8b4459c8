"""Training engine shared by every notebook: ``fit``, ``evaluate``, ``predict`` and ``load_checkpoint``.

One loop (d2l's habit) with timm's training habits: AdamW/SGD with per-part learning rates and no weight
decay on norms, biases and other 1-d parameters; linear warm-up then cosine (or step, multistep,
exponential, plateau); label smoothing; gradient clipping and accumulation; AMP (bf16 where supported,
else fp16 with a GradScaler); channels_last; optional ``torch.compile`` and EMA weights.

Every epoch writes ``last.pt`` and ``best.pt`` atomically, ``history.csv`` and ``config.json``, all inside
``run_dir`` and nowhere else. Checkpoints hold only tensors and plain containers, so they load with
``torch.load(..., weights_only=True)``; ``fit(..., resume=True)`` continues a run exactly where it stopped.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
import warnings
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from timm.utils import ModelEmaV3
from torch import nn
from tqdm.auto import tqdm

from helpers import config

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "train_images_per_s",
                   "time_s"]
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("cosine", "step", "multistep", "exponential", "plateau", "none")
AMP_MODES = ("auto", "bf16", "fp16", "off")
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
    compile: bool = False  # torch.compile the training forward
    ema_decay: float | None = None  # EMA of the weights (timm ModelEmaV3 with warm-up); used for evaluation
    monitor: str = "val_acc"  # history column that picks best.pt ("...loss" columns are minimised)
    early_stopping: int | None = None  # stop after this many epochs without improvement of `monitor`
    seed: int = 0
    max_steps_per_epoch: int | None = None  # cap on batches per epoch, for quick runs
    progress: bool = True  # tqdm bar per epoch and a summary line
    device: str | None = None  # None: config.device()

    def __post_init__(self) -> None:
        for name, allowed in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS), ("amp", AMP_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}; choose one of {allowed}.")
        if self.epochs < 1 or self.accum_steps < 1:
            raise ValueError("TrainConfig.epochs and accum_steps must be at least 1.")
        if self.scheduler == "plateau" and self.warmup_epochs:
            raise ValueError("scheduler='plateau' has no warm-up; set warmup_epochs=0 or use 'cosine'.")
        if self.scheduler == "multistep" and not self.milestones:
            raise ValueError("scheduler='multistep' needs milestones, e.g. milestones=(30, 60).")
        self.betas = tuple(self.betas)
        self.milestones = tuple(self.milestones)

    @property
    def mode(self) -> str:
        """"min" for a monitored loss, "max" for anything else (accuracy, AUC...)."""
        return "min" if self.monitor.endswith("loss") else "max"


# ----------------------------------------------------------------------------------------------- devices

def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for an ``amp`` setting on ``device`` (None: full precision)."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp={amp!r}; choose one of {AMP_MODES}.")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        # native bf16 needs Ampere or newer (compute capability 8); is_bf16_supported() also counts the slow
        # emulation on a T4 or V100, which must get fp16 + GradScaler instead
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _to_device(obj, device: torch.device, channels_last: bool = False):
    """Move tensors (also inside lists/tuples/dicts) without blocking; 4-D inputs optionally channels_last."""
    if isinstance(obj, torch.Tensor):
        fmt = torch.channels_last if channels_last and obj.ndim == 4 else torch.preserve_format
        return obj.to(device, non_blocking=True, memory_format=fmt)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device, channels_last) for v in obj)
    return obj


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batch_size(inputs) -> int:
    if isinstance(inputs, torch.Tensor):
        return inputs.shape[0]
    first = next(iter(inputs.values() if isinstance(inputs, Mapping) else inputs))
    return _batch_size(first)


def _split_batch(batch):
    """``(inputs, targets)`` from a batch; a bare tensor is inputs without targets."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    return batch[0], (batch[1] if len(batch) > 1 else None)


def correct_count(outputs, targets) -> torch.Tensor | None:
    """Top-1 hits in a batch (soft MixUp/CutMix targets count their argmax); None if not classification."""
    if not (isinstance(outputs, torch.Tensor) and isinstance(targets, torch.Tensor)) or outputs.ndim != 2:
        return None
    if targets.is_floating_point() and targets.ndim == 2:
        targets = targets.argmax(1)
    if targets.ndim != 1:
        return None
    return (outputs.argmax(1) == targets).sum()


# ------------------------------------------------------------------------------- optimizer and schedule

def param_groups(named_parameters: Iterable[tuple[str, nn.Parameter]], cfg: TrainConfig) -> list[dict]:
    """Optimizer groups: LR multiplier from the longest matching ``cfg.param_groups`` prefix, and weight
    decay only on parameters with 2+ dimensions (no decay on norms, biases, layer scales)."""
    groups: dict[tuple[str, bool], dict] = {}
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        prefix = max((p for p in cfg.param_groups if name.startswith(p)), key=len, default="")
        decay = param.ndim > 1
        scale = cfg.param_groups.get(prefix, 1.0)
        group = groups.setdefault((prefix, decay), {
            "params": [], "name": f"{prefix or 'default'}:{'decay' if decay else 'no_decay'}",
            "lr": cfg.lr * scale, "lr_scale": scale, "weight_decay": cfg.weight_decay if decay else 0.0})
        group["params"].append(param)
    unused = set(cfg.param_groups) - {prefix for prefix, _ in groups}
    if unused:
        raise ValueError(f"param_groups prefixes {sorted(unused)} match no trainable parameter "
                         "(names look like 'stages.0.blocks.0.dwconv.weight', 'head.fc.weight').")
    return list(groups.values())


def build_optimizer(named_parameters: Iterable[tuple[str, nn.Parameter]],
                    cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum/nesterov), Adam or AdamW over ``param_groups``."""
    groups = param_groups(named_parameters, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer(groups, lr=cfg.lr, betas=cfg.betas)


def lr_factor(step: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of the base LR at optimizer ``step``: linear warm-up, then the chosen decay, floored at
    ``min_lr / lr``. Step-like decays change at epoch boundaries, like torch's StepLR stepped per epoch."""
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    floor = cfg.min_lr / cfg.lr if cfg.lr else 0.0
    epoch = step // steps_per_epoch
    if cfg.scheduler == "cosine":
        progress = min(1.0, (step - warmup) / max(1, cfg.epochs * steps_per_epoch - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.scheduler == "step":
        return max(floor, cfg.gamma ** (epoch // cfg.step_size))
    if cfg.scheduler == "multistep":
        return max(floor, cfg.gamma ** bisect_right(sorted(cfg.milestones), epoch))
    if cfg.scheduler == "exponential":
        return max(floor, cfg.gamma ** epoch)
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """A per-step ``LambdaLR`` over ``lr_factor``, or ``ReduceLROnPlateau`` (per epoch, on the monitor)."""
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=cfg.mode, factor=cfg.gamma,
                                                          patience=cfg.patience, min_lr=cfg.min_lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, steps_per_epoch))


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The schedule's current LR without group multipliers (the ``lr`` history column)."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("lr_scale", 1.0)


# ----------------------------------------------------------------------------------------- checkpoints

def _rng_state() -> dict:
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
            "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal.tolist()), gauss))
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write to ``path.tmp`` then rename, so an interruption never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _save_epoch(run_dir: Path, ckpt: dict, is_best: bool) -> None:
    """``last.pt`` (and ``best.pt`` when ``is_best``) plus ``history.csv``, each written atomically."""
    _atomic_write(run_dir / "last.pt", lambda tmp: torch.save(ckpt, tmp))
    if is_best:
        _atomic_write(run_dir / "best.pt", lambda tmp: torch.save(ckpt, tmp))
    frame = pd.DataFrame(ckpt["history"])
    _atomic_write(run_dir / "history.csv", lambda tmp: frame.to_csv(tmp, index=False))


def load_checkpoint(path: str | Path, model: nn.Module | None = None, use_ema: bool = True,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load a ``fit`` checkpoint (``weights_only=True``); with ``model``, restore its weights in place.

    ``use_ema`` picks the EMA weights when the run kept them (those were evaluated and chose ``best.pt``).
    Returns the whole checkpoint (``epoch``, ``history``, ``config``...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}; fit() writes run_dir/last.pt and run_dir/best.pt.")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if model is not None:
        weights = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
        model.load_state_dict(weights)
    return ckpt


# ------------------------------------------------------------------------------------ evaluate/predict

@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable, loss_fn: Callable | None = None, amp: str = "auto",
             channels_last: bool = True, progress: bool = False) -> dict:
    """Mean loss (default: cross-entropy), top-1 accuracy and sample count over ``loader``, in eval mode."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    device = _model_device(model)
    dtype = resolve_amp(amp, device)
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    n, counted = 0, False
    for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
        inputs, targets = _split_batch(batch)
        inputs, targets = _to_device(inputs, device, channels_last), _to_device(targets, device)
        with _autocast(device, dtype):
            outputs = model(inputs)
            loss = loss_fn(outputs, targets)
        size = _batch_size(inputs)
        totals[0] += loss.float() * size
        if (correct := correct_count(outputs, targets)) is not None:
            totals[1] += correct
            counted = True
        n += size
    model.train(was_training)
    loss_sum, correct_sum = totals.tolist()
    return {"loss": loss_sum / max(n, 1), "acc": correct_sum / max(n, 1) if counted else math.nan, "n": n}


def _to_cpu(obj):
    """Tensors (also inside dicts/lists) on the CPU, floating ones as float32."""
    if isinstance(obj, torch.Tensor):
        return obj.float().cpu() if obj.is_floating_point() else obj.cpu()
    if isinstance(obj, Mapping):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _concat(chunks: list):
    if isinstance(chunks[0], torch.Tensor):
        return torch.cat(chunks)
    if isinstance(chunks[0], Mapping):
        return {k: _concat([c[k] for c in chunks]) for k in chunks[0]}
    return [item for chunk in chunks for item in chunk]


@torch.inference_mode()
def predict(model: nn.Module, loader: Iterable, return_targets: bool = False, amp: str = "auto",
            channels_last: bool = True, progress: bool = True):
    """Model outputs (float32, on CPU) for every batch of ``loader``, in order; optionally the targets too
    (tensors are concatenated, anything else such as file names becomes a list)."""
    device = _model_device(model)
    dtype = resolve_amp(amp, device)
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    for batch in tqdm(loader, desc="predict", leave=False, disable=not progress):
        inputs, target = _split_batch(batch)
        with _autocast(device, dtype):
            out = model(_to_device(inputs, device, channels_last))
        outputs.append(_to_cpu(out))
        targets.append(target)
    model.train(was_training)
    logits = _concat(outputs)
    return (logits, _concat(targets)) if return_targets else logits


# ------------------------------------------------------------------------------------------------- fit

class _Trainer:
    """The mutable state of one run: model, optimizer, schedule, scaler, EMA; one epoch at a time."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, loss_fn: Callable | None, batches_per_epoch: int):
        self.cfg = cfg
        self.device = torch.device(cfg.device) if cfg.device else config.device()
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        fmt = torch.channels_last if cfg.channels_last else torch.preserve_format
        self.model = model.to(self.device, memory_format=fmt)
        self.train_model = torch.compile(self.model) if cfg.compile else self.model
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
        self.optimizer.zero_grad(set_to_none=True)
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        seen, counted, window = 0, False, []
        bar = tqdm(total=n_batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not cfg.progress)
        start = time.perf_counter()
        for i, batch in enumerate(islice(loader, n_batches)):
            inputs, targets = _split_batch(batch)
            inputs = _to_device(inputs, self.device, cfg.channels_last)
            targets = _to_device(targets, self.device)
            group_size = min(cfg.accum_steps, n_batches - i // cfg.accum_steps * cfg.accum_steps)
            lr = base_lr(self.optimizer)
            with _autocast(self.device, self.amp_dtype):
                outputs = self.train_model(inputs)
                loss = self.loss_fn(outputs, targets)
            self.scaler.scale(loss / group_size).backward()
            if (i + 1) % cfg.accum_steps == 0 or i + 1 == n_batches:
                self._optimizer_step()
            size = _batch_size(inputs)
            seen += size
            totals[0] += loss.detach().float() * size
            if (correct := correct_count(outputs, targets)) is not None:
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
        loss_sum, correct_sum = totals.tolist()
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


def _seed_loader(loader: Iterable, seed: int) -> None:
    """Seed the loader's/sampler's generators so an epoch's order depends only on ``seed``.

    Loaders without a generator shuffle from the global torch RNG, which checkpoints save and restore, so
    those resume exactly too (with ``num_workers=0`` or non-persistent workers).
    """
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    candidates = (getattr(loader, "generator", None), getattr(sampler, "generator", None),
                  getattr(getattr(batch_sampler, "sampler", None), "generator", None))
    for generator in {id(g): g for g in candidates if isinstance(g, torch.Generator)}.values():
        generator.manual_seed(seed)


def _is_better(value: float, best: float, mode: str) -> bool:
    if math.isnan(value):
        return False
    return math.isnan(best) or (value < best if mode == "min" else value > best)


def _best(history: list[dict], key: str, mode: str) -> tuple[float, int]:
    """Best monitored value and its epoch (NaN, 0 when none)."""
    best, epoch = math.nan, 0
    for row in history:
        if _is_better(row[key], best, mode):
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


def _write_json(path: Path, data: dict) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str)))


def fit(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None, cfg: TrainConfig,
        run_dir: str | Path, loss_fn: Callable | None = None, resume: bool = False,
        metrics_fn: Callable[[nn.Module], Mapping[str, float]] | None = None) -> pd.DataFrame:
    """Train ``model`` and return its history (one row per epoch, columns ``HISTORY_COLUMNS`` + extras).

    Batches are ``(inputs, targets)``; targets are class indices or soft labels (MixUp/CutMix).
    ``loss_fn(outputs, targets)`` defaults to cross-entropy with ``cfg.label_smoothing`` (validation: plain
    cross-entropy); a loss module with parameters is trained along. ``metrics_fn(eval_model)`` may add
    columns each epoch (e.g. ``val_auc``), which ``cfg.monitor`` can then pick. Without ``val_loader``
    the monitor falls back to the train column (``val_acc`` -> ``train_acc``).

    ``run_dir`` receives ``last.pt``, ``best.pt``, ``history.csv`` and ``config.json``; a fresh run refuses
    a folder that already has ``last.pt``. ``resume=True`` continues from ``last.pt`` (``cfg.epochs`` may
    grow) and reproduces the uninterrupted run, as the shuffling is re-seeded per epoch from ``cfg.seed``.
    Afterwards ``model`` holds the last epoch's raw weights; ``load_checkpoint(run_dir / "best.pt", model)``
    restores the best ones (EMA weights when EMA was on). On CUDA, fit turns on cudnn.benchmark.
    """
    run_dir = Path(run_dir)
    _check_run_dir(run_dir, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = _Trainer(model, cfg, loss_fn, _batches_per_epoch(train_loader, cfg))
    if trainer.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    history: list[dict] = []
    if resume:
        ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
        _warn_config_changes(ckpt["config"], cfg)
        trainer.load_state_dict(ckpt)
        history = ckpt["history"]
        _set_rng_state(ckpt["rng"])
    else:
        config.seed_everything(cfg.seed)
    no_val = val_loader is None and cfg.monitor in ("val_acc", "val_loss")
    monitor = cfg.monitor.replace("val_", "train_", 1) if no_val else cfg.monitor
    _write_json(run_dir / "config.json", {
        "train_config": asdict(cfg), "device": str(trainer.device), "amp_dtype": str(trainer.amp_dtype),
        "batches_per_epoch": trainer.batches_per_epoch, "steps_per_epoch": trainer.steps_per_epoch,
        "model": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
        "loss_fn": repr(trainer.loss_fn), "monitor": monitor, "torch": torch.__version__})
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        best, best_epoch = _best(history, monitor, cfg.mode) if history else (math.nan, 0)
        if cfg.early_stopping and history and epoch - 1 - best_epoch >= cfg.early_stopping:
            break
        start = time.perf_counter()
        _seed_loader(train_loader, cfg.seed + epoch)
        row = {"epoch": epoch, **trainer.train_epoch(train_loader, epoch)}
        val = (evaluate(trainer.eval_model, val_loader, trainer.val_loss_fn, cfg.amp, cfg.channels_last)
               if val_loader is not None else {"loss": math.nan, "acc": math.nan})
        row.update(val_loss=val["loss"], val_acc=val["acc"])
        if metrics_fn is not None:
            row.update({k: float(v) for k, v in metrics_fn(trainer.eval_model).items()})
        row["time_s"] = time.perf_counter() - start
        if monitor not in row:
            raise KeyError(f"monitor={cfg.monitor!r} is not a history column; columns are {list(row)}.")
        history.append(row)
        if cfg.scheduler == "plateau":
            trainer.scheduler.step(row[monitor])
        ckpt = {**trainer.state_dict(), "epoch": epoch, "history": history, "rng": _rng_state(),
                "config": asdict(cfg)}
        _save_epoch(run_dir, ckpt, _is_better(row[monitor], best, cfg.mode)
                    or (math.isnan(best) and math.isnan(row[monitor])))
        if cfg.progress:
            tqdm.write(" ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, (int, float))))
    columns = list(dict.fromkeys(HISTORY_COLUMNS + [k for row in history for k in row]))
    return pd.DataFrame(history, columns=columns)
