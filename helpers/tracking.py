"""Run logging where students look: TensorBoard event files in every run folder (no account needed) and,
when asked for, Weights & Biases (offline-safe: without the package or a key nothing fails, and the notice
says how to enable it). ``history.csv`` stays the source of truth; these are views of it."""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

WANDB_HOWTO = ("Weights & Biases logging is off: {why}. To enable it: pip install wandb, then `wandb login` (or "
               "set WANDB_API_KEY; on Kaggle/Colab put it in the notebook's secrets), and pass wandb=<project>.")


class RunLogger:
    """Scalars of each epoch to ``run_dir/tensorboard`` and, with ``wandb_project``, to W&B (offline mode
    without a key: the run syncs later with ``wandb sync``); ``enabled=False`` (a non-main process) logs
    nothing."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, wandb_project: str | None = None,
                 config: Mapping | None = None, enabled: bool = True):
        self.tb = self.wandb = None
        if tensorboard and enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        if wandb_project and enabled:
            self.wandb = _wandb_run(wandb_project, Path(run_dir), dict(config or {}))

    def log(self, row: Mapping[str, float], step: int) -> None:
        """Every finite numeric value of ``row`` at ``step`` (the epoch)."""
        scalars = {k: float(v) for k, v in row.items()
                   if isinstance(v, (int, float)) and k != "epoch" and math.isfinite(v)}
        if self.tb is not None:
            for key, value in scalars.items():
                self.tb.add_scalar(key, value, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def _wandb_run(project: str, run_dir: Path, config: dict):
    """A W&B run in ``run_dir``, online with a key and offline without; None (with how to enable) when the
    package is missing."""
    try:
        import wandb
    except ImportError:
        warnings.warn(WANDB_HOWTO.format(why="the wandb package is not installed"), stacklevel=3)
        return None
    mode = "online" if os.environ.get("WANDB_API_KEY") or wandb.api.api_key else "offline"
    if mode == "offline":
        warnings.warn(WANDB_HOWTO.format(why="no API key, so the run is logged offline in the run folder"),
                      stacklevel=3)
    return wandb.init(project=project, dir=str(run_dir), name=run_dir.name, config=config, mode=mode)
