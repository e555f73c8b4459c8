"""Where a notebook runs (a local checkout, Colab or Kaggle) and the folders that follows from it.

- Kaggle (``KAGGLE_KERNEL_RUN_TYPE`` is set): competition and dataset inputs are mounted read-only under
  ``/kaggle/input`` (``helpers.datasets.locate`` looks there first); every output goes under the writable
  ``/kaggle/working`` (20 GB, kept with a saved version).
- Colab: the VM is fresh each session. :func:`use_drive` mounts Google Drive and keeps data, runs and
  submissions in one Drive folder, so a checkpoint written by one notebook is there for the next, and a
  disconnect loses nothing; caches (packed images) stay on the fast local disk.
- Anywhere: ``FACES_DATA``, ``FACES_RUNS``, ``FACES_SUBMISSIONS`` and ``FACES_CACHE`` override every root.

Tests move the Kaggle roots (``FACES_KAGGLE_INPUT``, ``FACES_KAGGLE_WORKING``) and the Drive mount point
(``FACES_DRIVE_MOUNT``), and inject the mount function.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")
DRIVE_MOUNT = Path("/content/drive")
DRIVE_FOLDER = "MyDrive/face-notebooks"  # one folder on Drive for data, runs and submissions
COLAB_CACHE = Path("/content/cache")  # local disk: fast for the many small reads of training
OUTPUT_ENV = {"data": "FACES_DATA", "runs": "FACES_RUNS", "submissions": "FACES_SUBMISSIONS", "cache": "FACES_CACHE"}


def host() -> str:
    """``"kaggle"``, ``"colab"`` or ``"local"``."""
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return "kaggle"
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
        return "colab"
    return "local"


def kaggle_input() -> Path:
    """Kaggle's read-only input mount (``FACES_KAGGLE_INPUT`` moves it for tests)."""
    return Path(os.environ.get("FACES_KAGGLE_INPUT", KAGGLE_INPUT))


def kaggle_working() -> Path:
    """Kaggle's writable output folder (``FACES_KAGGLE_WORKING`` moves it for tests)."""
    return Path(os.environ.get("FACES_KAGGLE_WORKING", KAGGLE_WORKING))


def read_only_roots() -> list[Path]:
    """Folders that must never be written into: Kaggle's input mount when running on Kaggle."""
    return [kaggle_input()] if host() == "kaggle" else []


def output_root() -> Path | None:
    """The folder that holds data downloads, runs, submissions and caches on this host (None: the checkout)."""
    return kaggle_working() if host() == "kaggle" else None


def drive_mount() -> Path:
    """Where Google Drive is mounted on Colab (``FACES_DRIVE_MOUNT`` moves it for tests)."""
    return Path(os.environ.get("FACES_DRIVE_MOUNT", DRIVE_MOUNT))


def use_drive(mount: Callable[[str], None] | None = None, folder: str = DRIVE_FOLDER) -> Path:
    """Mount Google Drive (``google.colab.drive.mount`` unless ``mount`` is given; skipped when it is mounted
    already) and point data, runs and submissions at ``<mount>/<folder>/{data,runs,submissions}``; caches go to
    the local disk. Returns the Drive folder. Variables the user set already (``FACES_RUNS``...) are kept."""
    mount_point = drive_mount()
    if not (mount_point / "MyDrive").is_dir():
        if mount is None:
            from google.colab import drive  # only importable on Colab

            mount = drive.mount
        mount(str(mount_point))
    root = mount_point / folder
    for kind in ("data", "runs", "submissions"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        os.environ.setdefault(OUTPUT_ENV[kind], str(root / kind))
    os.environ.setdefault(OUTPUT_ENV["cache"], str(COLAB_CACHE))
    return root
