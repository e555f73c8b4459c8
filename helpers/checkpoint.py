"""Checkpoints of ``engine.fit``: what ``last.pt`` (everything needed to resume) and ``best.pt`` (weights only)
hold, the RNG state that makes a resumed run exact, and the one place that picks EMA or raw weights.

Checkpoints hold only tensors and plain containers, so they load with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from helpers.files import atomic_write

WEIGHT_KEYS = ("model", "ema", "loss_fn", "epoch", "metrics", "config")  # what best.pt keeps of an epoch's state


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) random states as tensors and plain values."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
            "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only on a machine with the same GPU count)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal.tolist()), gauss))
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_epoch(run_dir: Path, state: dict, is_best: bool) -> None:
    """``last.pt`` (the whole ``state``) and, when ``is_best``, ``best.pt`` (weights only), plus
    ``history.csv``; each written atomically."""
    atomic_write(run_dir / "last.pt", lambda tmp: torch.save(state, tmp))
    if is_best:
        atomic_write(run_dir / "best.pt", lambda tmp: torch.save({k: state[k] for k in WEIGHT_KEYS}, tmp))
    frame = pd.DataFrame(state["history"])
    atomic_write(run_dir / "history.csv", lambda tmp: frame.to_csv(tmp, index=False))


def write_json(path: Path, data: dict) -> None:
    """``data`` as indented JSON, written atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str)))


def model_weights(ckpt: dict, use_ema: bool = True) -> dict:
    """The state dict to load from a checkpoint: its EMA weights when it kept them (those were evaluated and
    chose ``best.pt``) and ``use_ema``, else the raw model weights."""
    return ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]


def load_checkpoint(path: str | Path, model: nn.Module | None = None, use_ema: bool = True,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load a ``fit`` checkpoint (``weights_only=True``); with ``model``, restore its weights in place
    (:func:`model_weights`). Returns the checkpoint (``epoch``, ``metrics``, ``config``...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}; fit() writes run_dir/last.pt and run_dir/best.pt.")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if model is not None:
        model.load_state_dict(model_weights(ckpt, use_ema))
    return ckpt
