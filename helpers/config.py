"""Profiles, paths, device, seeding and run folders.

The profile decides sizes (image size, epochs, batch, workers) so that the same
notebook cells run in seconds on the synthetic demo twin (``FACES_PROFILE=demo``)
and at the recipes' real sizes on a GPU (``FACES_PROFILE=full``, the default).
"""
from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Profile:
    """Sizes that scale a notebook between CI (demo) and a GPU run (full).

    ``None`` in ``epochs``/``image_size``/``batch_size`` means "the recipe's own value".
    """

    name: str
    image_size: int | None
    epochs: int | None
    batch_size: int | None
    num_workers: int
    demo: bool

    def pick(self, field: str, recipe_value):
        """The profile's override for ``field`` if it has one, else the recipe's value."""
        value = getattr(self, field)
        return recipe_value if value is None else value


PROFILES = {
    "demo": Profile("demo", image_size=32, epochs=3, batch_size=32, num_workers=0, demo=True),
    "full": Profile("full", image_size=None, epochs=None, batch_size=None,
                    num_workers=min(8, os.cpu_count() or 1), demo=False),
}


def profile() -> Profile:
    """The active profile, chosen by ``FACES_PROFILE`` (``demo`` or ``full``; default ``full``)."""
    name = os.environ.get("FACES_PROFILE", "full").strip().lower()
    if name not in PROFILES:
        raise ValueError(f"FACES_PROFILE={name!r} is unknown; use one of {sorted(PROFILES)}.")
    return PROFILES[name]


def data_root() -> Path:
    """Where datasets live: ``FACES_DATA`` if set, else ``data/`` (``data/demo/`` for the demo twin)."""
    if env := os.environ.get("FACES_DATA"):
        return Path(env).expanduser().resolve()
    return REPO_ROOT / "data" / ("demo" if profile().demo else "")


def _output_dir(env: str, folder: str) -> Path:
    if value := os.environ.get(env):
        return Path(value).expanduser().resolve()
    return REPO_ROOT / folder / ("demo" if profile().demo else "")


def runs_dir() -> Path:
    """Run folders (checkpoints, history, results registry): ``FACES_RUNS`` or ``runs/`` (``runs/demo/``)."""
    return _output_dir("FACES_RUNS", "runs")


def submissions_dir() -> Path:
    """Kaggle CSVs: ``FACES_SUBMISSIONS`` or ``submissions/`` (``submissions/demo/`` so a demo CSV is never
    mistaken for a real one)."""
    return _output_dir("FACES_SUBMISSIONS", "submissions")


def realdata(name: str = "") -> Path:
    """The small real face sets (``FACES_REALDATA``, else ``../shared/realdata`` beside the checkout), or one of
    them; a missing folder is a ``FileNotFoundError`` saying where it was looked for."""
    root = Path(os.environ.get("FACES_REALDATA", REPO_ROOT.parent / "shared" / "realdata")).expanduser()
    folder = root / name
    if not folder.is_dir():
        raise FileNotFoundError(f"Real face set not found at {folder}; it sits beside the checkout in "
                                "../shared/realdata, or set FACES_REALDATA to the folder that holds it.")
    return folder


def device() -> torch.device:
    """cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (all devices) from one place."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def new_run_dir(name: str, root: Path | None = None) -> Path:
    """Create ``runs/<name>/<timestamp>`` (suffixed ``-1``, ``-2``... if taken); never reuses a folder."""
    base = (root or runs_dir()) / name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = base / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"Could not create a fresh run folder under {base}")


def describe() -> dict:
    """A short summary of the active profile, paths and device, for a notebook's setup cell."""
    return {**asdict(profile()), "data_root": str(data_root()), "runs": str(runs_dir()),
            "submissions": str(submissions_dir()), "device": str(device()),
            "torch": torch.__version__, "threads": torch.get_num_threads()}
