"""Optimizer and learning-rate schedule of ``engine.fit``: parameter groups (per-part rates, no weight decay on
norms and biases), SGD/Adam/AdamW, and a per-step warm-up + decay (or ReduceLROnPlateau per epoch)."""
from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from helpers.engine import TrainConfig


def param_groups(named_parameters: Iterable[tuple[str, nn.Parameter]], cfg: TrainConfig) -> list[dict]:
    """Optimizer groups: LR multiplier from the longest matching ``cfg.param_groups`` prefix, and weight
    decay only on parameters with 2+ dimensions (no decay on norms, biases, layer scales). A prefix that names
    no parameter at all is an error; one whose parameters are all frozen (a head-only stage) is fine."""
    named = list(named_parameters)
    groups: dict[tuple[str, bool], dict] = {}
    for name, param in named:
        if not param.requires_grad:
            continue
        prefix = max((p for p in cfg.param_groups if name.startswith(p)), key=len, default="")
        decay = param.ndim > 1
        scale = cfg.param_groups.get(prefix, 1.0)
        group = groups.setdefault((prefix, decay), {
            "params": [], "name": f"{prefix or 'default'}:{'decay' if decay else 'no_decay'}",
            "lr": cfg.lr * scale, "lr_scale": scale, "weight_decay": cfg.weight_decay if decay else 0.0})
        group["params"].append(param)
    unknown = [p for p in cfg.param_groups if not any(name.startswith(p) for name, _ in named)]
    if unknown:
        raise ValueError(f"param_groups prefixes {sorted(unknown)} match no parameter "
                         "(names look like 'stages.0.blocks.0.dwconv.weight', 'head.fc.weight').")
    if not groups:
        raise ValueError("No trainable parameter: every parameter has requires_grad=False.")
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
