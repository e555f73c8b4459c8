"""Writing files safely: atomic writes, fresh never-overwritten names, and no write into an input folder.

Every module that writes (checkpoints, CSVs, aligned or packed copies, run folders) goes through these three,
so an interruption never leaves a half-written file, nothing a user made is overwritten, and a read-only
input (a Kaggle ``/kaggle/input`` mount, a dataset folder) is never written into.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

MAX_SUFFIX = 1000  # -1 ... -999 after a timestamp that is already taken


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def fresh_path(folder: str | Path, stem: str, suffix: str = "") -> Path:
    """Claim ``folder/<stem>_<YYYYmmdd-HHMMSS>[-i]<suffix>`` (a folder when ``suffix`` is empty, else an empty
    file), created exclusively so that two calls in the same second never get the same name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(MAX_SUFFIX):
        path = folder / f"{stem}{'_' if stem else ''}{stamp}{f'-{i}' if i else ''}{suffix}"
        try:
            if suffix:
                path.open("x").close()
            else:
                path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"No free name for {stem!r} in {folder} after {MAX_SUFFIX} tries.")


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """True when ``path`` is ``folder`` or lies below it (both resolved)."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def ensure_outside(target: str | Path, inputs: Iterable[str | Path], what: str = "output") -> Path:
    """``target``, or a ``ValueError`` when it lies inside one of the ``inputs`` folders (data is read-only)."""
    for folder in inputs:
        if is_inside(target, folder):
            raise ValueError(f"Refusing to write the {what} {target} inside the input folder {folder}: input "
                             "data is read-only (on Kaggle /kaggle/input is mounted read-only). Choose a folder "
                             "under helpers.config.cache_dir() or runs_dir().")
    return Path(target)
