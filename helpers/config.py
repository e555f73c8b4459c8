"""Profiles, paths, device, seeding and run folders.

The profile decides how big a run is: ``FACES_PROFILE=demo`` runs every notebook in seconds on the synthetic
demo twin (each recipe's demo values, ``helpers.recipes``); ``full`` (the default) runs the recipes' real
values on the real data. Paths follow the host (``helpers.runtime``): the checkout locally, ``/kaggle/working``
on Kaggle, a Drive folder on Colab with ``DRIVE=True``; ``FACES_*`` variables override each root.
"""
from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from helpers import files, runtime

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Profile:
    """``demo``: the synthetic twin and each recipe's demo values; ``full``: real data at the recipes' values."""

    name: str
    demo: bool
    num_workers: int  # DataLoader workers when a recipe or NUM_WORKERS does not say


PROFILES = {
    "demo": Profile("demo", demo=True, num_workers=0),
    "full": Profile("full", demo=False, num_workers=min(8, os.cpu_count() or 1)),
}


def profile() -> Profile:
    """The active profile, chosen by ``FACES_PROFILE`` (``demo`` or ``full``; default ``full``)."""
    name = os.environ.get("FACES_PROFILE", "full").strip().lower()
    if name not in PROFILES:
        raise ValueError(f"FACES_PROFILE={name!r} is unknown; use one of {sorted(PROFILES)}.")
    return PROFILES[name]


def _root(kind: str) -> Path:
    """``FACES_<KIND>`` if set, else ``<host output root or checkout>/<kind>`` (``/demo`` for the demo twin)."""
    if value := os.environ.get(runtime.OUTPUT_ENV[kind]):
        return Path(value).expanduser().resolve()
    base = runtime.output_root() or REPO_ROOT
    return base / kind / ("demo" if profile().demo else "")


def data_root() -> Path:
    """Where datasets are downloaded to (or the demo twin is written): ``FACES_DATA`` or ``data/``. Inputs
    attached on Kaggle are found under ``/kaggle/input`` instead (``helpers.datasets.locate``)."""
    return _root("data")


def runs_dir() -> Path:
    """Run folders (checkpoints, history, results registry): ``FACES_RUNS`` or ``runs/``."""
    return _root("runs")


def submissions_dir() -> Path:
    """Kaggle CSVs: ``FACES_SUBMISSIONS`` or ``submissions/`` (``submissions/demo/`` so a demo CSV is never
    mistaken for a real one)."""
    return _root("submissions")


def cache_dir() -> Path:
    """Derived data that can be rebuilt (packed images, aligned or distorted copies): ``FACES_CACHE`` or
    ``cache/``; on Colab the local disk, never Drive."""
    return _root("cache")


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
    return files.fresh_path((root or runs_dir()) / name, "")


def _has_checkpoint(folder: Path) -> bool:
    return any(folder.glob("**/last.pt"))


def find_run(name: str, which: str | Path) -> Path:
    """A run folder with a checkpoint: ``which`` is a folder, or ``"latest"`` (the newest folder of ``name``
    under ``runs_dir()`` holding a ``last.pt``, also in a stage or model subfolder); an error says what was
    looked for."""
    if str(which) == "latest":
        found = sorted(p for p in (runs_dir() / name).glob("*") if p.is_dir() and _has_checkpoint(p))
        if not found:
            raise FileNotFoundError(f"'latest': no run of {name} with a checkpoint under {runs_dir() / name}; "
                                    f"run that notebook first, or give a run folder.")
        return found[-1]
    folder = Path(which).expanduser()
    if not _has_checkpoint(folder):
        raise FileNotFoundError(f"{folder} holds no last.pt (nor in a subfolder); give a run folder a notebook "
                                "printed, or 'latest'.")
    return folder


def open_run(name: str, resume: str | Path | None = None) -> tuple[Path, bool]:
    """``(run_dir, resuming)`` for a notebook's ``RESUME`` parameter: None gives a fresh
    ``runs/<name>/<timestamp>``; a run folder or ``"latest"`` (:func:`find_run`) is continued."""
    return (new_run_dir(name), False) if resume is None else (find_run(name, resume), True)


def start(drive: bool = False, mount=None, seed: int = 0) -> dict:
    """What every notebook's setup cell does once ``helpers`` imports: seed everything, and with ``drive``
    (Colab only; ``mount`` replaces ``google.colab.drive.mount`` in tests) keep data, runs and submissions
    in one Google Drive folder. Returns :func:`describe`."""
    if drive:
        if runtime.host() != "colab" and mount is None:
            raise RuntimeError("DRIVE=True keeps outputs on Google Drive and works on Colab only; set DRIVE=False "
                               "here (outputs go to " + str(runtime.output_root() or REPO_ROOT) + ").")
        print(f"Google Drive folder for data, runs and submissions: {runtime.use_drive(mount)}")
    seed_everything(seed)
    return describe()


def describe() -> dict:
    """A short summary of the host, profile, paths and device, for a notebook's setup cell."""
    return {"host": runtime.host(), **asdict(profile()), "data_root": str(data_root()), "runs": str(runs_dir()),
            "submissions": str(submissions_dir()), "cache": str(cache_dir()), "device": str(device()),
            "torch": torch.__version__, "threads": torch.get_num_threads()}
