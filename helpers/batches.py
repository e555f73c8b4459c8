"""Batches on their way through the engine: the autocast dtype for a device, moving nested batches (tensors in
tuples, lists and dicts) to a device and back, their size, and top-1 hits."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

AMP_MODES = ("auto", "bf16", "fp16", "off")


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


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def to_device(obj, device: torch.device, channels_last: bool = False):
    """Move tensors (also inside lists/tuples/dicts) without blocking; 4-D inputs optionally channels_last."""
    if isinstance(obj, torch.Tensor):
        fmt = torch.channels_last if channels_last and obj.ndim == 4 else torch.preserve_format
        return obj.to(device, non_blocking=True, memory_format=fmt)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, channels_last) for v in obj)
    return obj


def to_cpu(obj):
    """Tensors (also inside dicts/lists) on the CPU, floating ones as float32."""
    if isinstance(obj, torch.Tensor):
        return obj.float().cpu() if obj.is_floating_point() else obj.cpu()
    if isinstance(obj, Mapping):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def concat(chunks: list):
    if isinstance(chunks[0], torch.Tensor):
        return torch.cat(chunks)
    if isinstance(chunks[0], Mapping):
        return {k: concat([c[k] for c in chunks]) for k in chunks[0]}
    return [item for chunk in chunks for item in chunk]


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def batch_size(inputs) -> int:
    if isinstance(inputs, torch.Tensor):
        return inputs.shape[0]
    first = next(iter(inputs.values() if isinstance(inputs, Mapping) else inputs))
    return batch_size(first)


def loader_batch_size(loader) -> int | None:
    """The batch size a loader states (its own, or its batch sampler's); None when it states none."""
    return getattr(loader, "batch_size", None) or getattr(getattr(loader, "batch_sampler", None), "batch_size", None)


def seed_loader_generators(loader, seed: int) -> None:
    """Seed every ``torch.Generator`` a loader shuffles with: its own, its sampler's, its batch sampler's and
    what that wraps (a ``BatchSampler``'s sampler, an ``accelerate`` shard's batch sampler), each once."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    owners = (loader, getattr(loader, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None),
              getattr(batch_sampler, "batch_sampler", None))
    generators = [getattr(owner, "generator", None) for owner in owners]
    for generator in {id(g): g for g in generators if isinstance(g, torch.Generator)}.values():
        generator.manual_seed(seed)


def split_batch(batch):
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
