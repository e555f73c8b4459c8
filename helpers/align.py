"""Face detection and alignment with facenet-pytorch's MTCNN, done once into a cached copy of a dataset.

MTCNN's three small networks ship inside the facenet-pytorch package, so detection works offline. Aligning
inside a training loader would repeat the detection every epoch; :func:`align_folder` writes the crops once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import groupby
from pathlib import Path

import numpy as np
import torch
from facenet_pytorch import MTCNN, extract_face
from PIL import Image, ImageDraw, ImageOps
from tqdm.auto import tqdm

from helpers import runtime
from helpers.files import atomic_write, ensure_outside
from helpers.imageio import load_rgb

_KEEP_SUFFIXES = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


@lru_cache(maxsize=2)
def detector(device: str | None = None) -> MTCNN:
    """An MTCNN returning every face, largest first, on CUDA when available (its weights are bundled)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return MTCNN(keep_all=True, select_largest=True, device=torch.device(device)).eval()


def _as_images(images) -> tuple[list[Image.Image], bool]:
    single = isinstance(images, (Image.Image, str, Path))
    items = [images] if single else list(images)
    return [im if isinstance(im, Image.Image) else load_rgb(im) for im in items], single


def detect(images, mtcnn: MTCNN | None = None):
    """Faces in an image (PIL or path) or a list of them: ``(boxes, probs, landmarks)``.

    Per image: ``boxes`` N x 4 (x1, y1, x2, y2), ``probs`` N, ``landmarks`` N x 5 x 2 (eyes, nose, mouth
    corners), largest face first; all three are ``None`` where no face was found. A single image gives the
    three arrays directly, a list gives three lists. Images of equal size are detected as one batch.
    """
    pictures, single = _as_images(images)
    mtcnn = mtcnn or detector()
    boxes, probs, points = [], [], []
    for _, group in groupby(pictures, key=lambda im: im.size):
        group = list(group)
        b, p, lm = mtcnn.detect(group, landmarks=True)
        for i in range(len(group)):
            found = b[i] is not None
            boxes.append(b[i] if found else None)
            probs.append(np.asarray(p[i], dtype=float) if found else None)
            points.append(lm[i] if found else None)
    return (boxes[0], probs[0], points[0]) if single else (boxes, probs, points)


def draw_detections(image: Image.Image | str | Path, box, landmarks=None, color: str = "lime") -> Image.Image:
    """A copy of ``image`` with the box(es) and the five landmarks of each face drawn on it."""
    image = (image if isinstance(image, Image.Image) else load_rgb(image)).convert("RGB").copy()
    draw = ImageDraw.Draw(image)
    width = max(1, round(min(image.size) / 100))
    for b in np.atleast_2d(np.asarray(box, dtype=float)) if box is not None else []:
        draw.rectangle(b.tolist(), outline=color, width=width)
    if landmarks is not None:
        for x, y in np.asarray(landmarks, dtype=float).reshape(-1, 2):
            draw.ellipse((x - 2 * width, y - 2 * width, x + 2 * width, y + 2 * width), fill=color)
    return image


@dataclass
class AlignSummary:
    """What :func:`align_folder` did; ``out_paths`` holds the aligned file of each source, in input order."""

    out_dir: Path
    out_paths: list[Path]
    aligned: int = 0
    skipped: int = 0
    no_face: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.aligned} aligned, {self.skipped} already done, "
            f"{len(self.no_face)} without a detected face "
            f"(copied resized) -> {self.out_dir}"
        )


def _target(src: Path, base: Path, out_dir: Path) -> Path:
    try:
        rel = src.resolve().relative_to(base)
    except ValueError:
        raise ValueError(
            f"{src} is not below src_root {base}; pass the folder that holds every image."
        ) from None
    return out_dir / (rel if rel.suffix.lower() in _KEEP_SUFFIXES else rel.with_suffix(".png"))


def _save(image: Image.Image, dst: Path) -> None:
    """Written atomically: a crash never leaves a half-written file that a later call would skip."""
    fmt = _KEEP_SUFFIXES[dst.suffix.lower()]
    atomic_write(dst, lambda tmp: image.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {})))


def _crop(image: Image.Image, boxes, image_size: int, margin: int) -> Image.Image:
    face = extract_face(image, boxes[0], image_size=image_size, margin=margin)
    return Image.fromarray(face.permute(1, 2, 0).numpy().round().clip(0, 255).astype(np.uint8))


def align_folder(
    src_paths: Sequence[str | Path],
    out_dir: str | Path,
    image_size: int = 160,
    margin: int = 20,
    batch_size: int = 32,
    src_root: str | Path | None = None,
    mtcnn: MTCNN | None = None,
) -> AlignSummary:
    """Write the largest face of every image as an ``image_size`` square crop under ``out_dir``.

    The folder structure below ``src_root`` (default: the sources' common folder) is kept; files already in
    ``out_dir`` are skipped, so a second call is cheap. ``out_dir`` must lie outside the sources' folder (use
    ``config.cache_dir()``). An image without a detected face is centre-cropped
    and resized instead and listed in ``summary.no_face``.
    """
    sources = [Path(p) for p in src_paths]
    if not sources:
        raise ValueError("align_folder got no image paths.")
    out_dir = Path(out_dir)
    base = (
        Path(src_root).resolve()
        if src_root
        else Path(os.path.commonpath([p.resolve().parent for p in sources]))
    )
    ensure_outside(out_dir, [base, *runtime.read_only_roots()], "aligned copy")
    summary = AlignSummary(out_dir, [_target(p, base, out_dir) for p in sources])
    todo = [(src, dst) for src, dst in zip(sources, summary.out_paths, strict=True) if not dst.exists()]
    summary.skipped = len(sources) - len(todo)
    mtcnn = mtcnn or detector()
    with tqdm(total=len(todo), desc="align faces", unit="img") as progress:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            images = [load_rgb(src) for src, _ in batch]
            boxes, _, _ = detect(images, mtcnn)
            for (src, dst), image, box in zip(batch, images, boxes, strict=True):
                if box is None:
                    summary.no_face.append(src)
                    _save(ImageOps.fit(image, (image_size, image_size), Image.Resampling.BILINEAR), dst)
                else:
                    summary.aligned += 1
                    _save(_crop(image, box, image_size, margin), dst)
            progress.update(len(batch))
            progress.set_postfix(no_face=len(summary.no_face))
    return summary
