"""Finding, checking and decoding image files: every image comes back as an RGB ``PIL.Image``.

Real face datasets carry greyscale PGMs, RGBA/palette PNGs, CMYK JPEGs, macOS ``.DS_Store``/``._x``
files, empty files left by a failed copy and JPEGs truncated by an interrupted download. This module
turns each of those into either an RGB image or a ``BadImageError`` that names the file and the fault.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

# Same suffixes as torchvision.datasets.folder.IMG_EXTENSIONS, so listings match ImageFolder's.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

ZERO_BYTE, TRUNCATED, UNREADABLE = "zero_byte", "truncated", "unreadable"
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)
_TRANSPARENT_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class BadImageError(ValueError):
    """An image file that cannot be used; ``kind`` is ``zero_byte``, ``truncated`` or ``unreadable``."""

    def __init__(self, path: str | Path, reason: str, kind: str = UNREADABLE):
        self.path, self.reason, self.kind = Path(path), reason, kind
        super().__init__(f"{path}: {reason}")


def is_image_file(path: str | Path) -> bool:
    """True for a visible file with an image suffix (skips ``.DS_Store``, ``._x.jpg``, text files...)."""
    name = Path(path).name
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _walk(folder: Path, recursive: bool) -> Iterable[Path]:
    """Every file below ``folder`` in ImageFolder's order (sorted walk, sorted names), hidden folders skipped."""
    if not recursive:
        yield from (folder / name for name in sorted(os.listdir(folder)) if (folder / name).is_file())
        return
    for dirpath, _, filenames in sorted(os.walk(folder, followlinks=True)):
        if any(part.startswith(".") or part == "__MACOSX" for part in Path(dirpath).relative_to(folder).parts):
            continue
        yield from (Path(dirpath) / name for name in sorted(filenames))


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files below ``folder``, in the order torchvision's ImageFolder lists them."""
    return [p for p in _walk(Path(folder), recursive) if is_image_file(p)]


def _open(path: str | Path, decode: bool) -> Image.Image:
    """Open ``path`` (fully decoded when ``decode``); every failure becomes a ``BadImageError``."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise BadImageError(path, f"cannot be read ({err.strerror or err})") from err
    if size == 0:
        raise BadImageError(path, "is empty (0 bytes); re-copy or re-download it", ZERO_BYTE)
    try:
        image = Image.open(path)
    except _DECODE_ERRORS as err:
        raise BadImageError(path, f"is not an image Pillow can read ({err})") from err
    if decode:
        try:
            image.load()
        except _DECODE_ERRORS as err:
            image.close()
            raise BadImageError(path, f"is truncated or corrupt ({err}); re-download it", TRUNCATED) from err
    return image


def _grey_to_uint8(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale scaled to 8 bits (16-bit range -> /257, [0, 1] floats -> x255)."""
    array = np.asarray(image, dtype=np.float64)
    top = array.max(initial=0.0)
    if image.mode.startswith("I;16") or (image.mode == "I" and top > 255):
        array = array / 257.0
    elif image.mode == "F" and top <= 1.0:
        array = array * 255.0
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as RGB; transparency is composited on white."""
    if image.mode.startswith("I") or image.mode == "F":
        image = _grey_to_uint8(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _TRANSPARENT_MODES:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` as an RGB image, or raise ``BadImageError`` naming the file and the fault."""
    with _open(path, decode=True) as image:
        return to_rgb(image)


@dataclass
class ScanReport:
    """What ``scan`` found: good images, the faulty files by kind, skipped non-images, modes and sizes."""

    n_ok: int = 0
    zero_byte: list[Path] = field(default_factory=list)
    truncated: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)
    non_image: list[Path] = field(default_factory=list)
    modes: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)

    @property
    def n_bad(self) -> int:
        return len(self.zero_byte) + len(self.truncated) + len(self.unreadable)

    def summary(self, first: int = 3) -> str:
        """Counts per category with the first few paths of each problem."""
        lines = [f"{self.n_ok} images ok, {self.n_bad} bad, {len(self.non_image)} non-image files skipped",
                 f"modes: {dict(self.modes.most_common())}",
                 f"sizes (w, h): {dict(self.sizes.most_common(5))}" + (" ..." if len(self.sizes) > 5 else "")]
        for name in (ZERO_BYTE, TRUNCATED, UNREADABLE, "non_image"):
            paths = getattr(self, name)
            if paths:
                shown = ", ".join(str(p) for p in paths[:first]) + (" ..." if len(paths) > first else "")
                lines.append(f"{name}: {len(paths)} ({shown})")
        return "\n".join(lines)

    __str__ = summary


def _files(root_or_paths: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(root_or_paths, (str, Path)):
        root = Path(root_or_paths)
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is not a folder; pass a dataset folder or a list of image paths.")
        return list(_walk(root, recursive=True))
    return [Path(p) for p in root_or_paths]


def scan(root_or_paths: str | Path | Iterable[str | Path], decode: bool = True,
         progress: bool = True) -> ScanReport:
    """Check every file below a folder (or in a list): decode it (or read its header) and tally the results."""
    report = ScanReport()
    for path in tqdm(_files(root_or_paths), desc="scan", unit="file", disable=not progress, leave=False):
        if not is_image_file(path):
            report.non_image.append(path)
            continue
        try:
            with _open(path, decode) as image:
                report.modes[image.mode] += 1
                report.sizes[image.size] += 1
        except BadImageError as err:
            getattr(report, err.kind).append(path)
            continue
        report.n_ok += 1
    return report


# path -> (st_size, st_mtime_ns, fault or None): header checks done by this process.
_HEADER_CACHE: dict[str, tuple[int, int, str | None]] = {}


def _header_fault(path: str | Path) -> str | None:
    """Why ``path`` fails the header check (``None``: it passes); remembered while its size and mtime stay."""
    key = str(path)
    try:
        stat = os.stat(key)
        stamp = (stat.st_size, stat.st_mtime_ns)
    except OSError:
        stamp = None
    cached = _HEADER_CACHE.get(key)
    if stamp is not None and cached is not None and cached[:2] == stamp:
        return cached[2]
    try:
        _open(key, decode=False).close()
        fault = None
    except BadImageError as err:
        fault = err.reason
    if stamp is not None:
        _HEADER_CACHE[key] = (*stamp, fault)
    return fault


def verify_headers(paths: Iterable, progress: bool = True, threads: int = 8) -> tuple[list, dict]:
    """Cheap check (non-empty file with a readable header, no decode): ``(ok_paths, {bad_path: reason})``.

    Results are remembered per file for the process (keyed by path, size and mtime from one ``os.stat``), so
    another dataset over the same files opens none of them, while a replaced file is checked again.
    """
    paths = list(paths)
    with ThreadPoolExecutor(threads) as pool:
        faults = list(tqdm(pool.map(_header_fault, paths), total=len(paths), desc="check headers",
                           unit="file", disable=not progress or len(paths) < 1000, leave=False))
    ok = [p for p, fault in zip(paths, faults) if fault is None]
    bad = {p: fault for p, fault in zip(paths, faults) if fault is not None}
    return ok, bad
