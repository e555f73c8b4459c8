"""FACECOM's seven distortions (COMSYS Hackathon-5 Task B) as image transforms.

``distort`` applies one named distortion to a PIL image, ``RandomDistortion`` is the training
augmentation, and ``distort_folder`` builds a distorted copy of any face set in Task B's layout
``<identity>/<stem>.jpg`` + ``<identity>/distortion/<stem>_<kind>.jpg``.

Every kind is an albumentations pipeline whose sizes (blur sigma, defocus radius, rain streak length
and slant, flare radius) scale with the image, so a 64 px demo face and a 250 px FACECOM frame look
alike. Hand-written, and why:
- ``_Haze`` (foggy): ``A.RandomFog`` draws ~1,000 white discs with a full-image copy each (~45 ms at
  250 px) and whitens mostly the centre; FACECOM's fog is an even light-grey veil over the whole frame.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from helpers.imageio import load_rgb, to_rgb

DISTORTIONS: tuple[str, ...] = ("blurred", "foggy", "lowlight", "noisy", "rainy", "resized", "sunny")
JPEG_QUALITY = 95
_MARKER = ".complete"


class _Haze(A.ImageOnlyTransform):
    """Blend toward a light grey whose density varies smoothly over the frame (fog, mist)."""

    def __init__(self, density_range: tuple[float, float], grey_range: tuple[float, float], p: float = 1.0):
        super().__init__(p=p)
        self.density_range, self.grey_range = density_range, grey_range

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        rng = self.random_generator
        patches = cv2.resize(rng.random((3, 3), dtype=np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        density = np.clip(np.float32(rng.uniform(*self.density_range)) + 0.25 * (patches - 0.5), 0.0, 0.9)
        return {"density": density[..., None], "grey": rng.uniform(*self.grey_range)}

    def apply(self, img: np.ndarray, density: np.ndarray, grey: float, **params: Any) -> np.ndarray:
        veiled = img + (np.float32(grey) - img) * density  # float32 throughout
        return np.clip(veiled, 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("density_range", "grey_range")


def _transforms(kind: str, height: int, width: int) -> list[A.BasicTransform]:
    """The albumentations steps of ``kind`` for an image of this size (every step with p=1 unless noted)."""
    s = min(height, width)
    if kind == "blurred":
        return [A.OneOf([A.GaussianBlur(sigma_limit=(0.02 * s, 0.035 * s), p=1),
                         A.Defocus(radius=(max(2, round(0.025 * s)), max(3, round(0.04 * s))),
                                   alias_blur=(0.1, 0.3), p=1)], p=1)]
    if kind == "foggy":
        return [_Haze(density_range=(0.55, 0.75), grey_range=(195, 230)),
                A.GaussianBlur(sigma_limit=(0.006 * s, 0.012 * s), p=1)]
    if kind == "lowlight":
        return [A.RandomGamma(gamma_limit=(160, 240), p=1),
                A.RandomBrightnessContrast(brightness_limit=(-0.06, -0.02), contrast_limit=(-0.65, -0.45), p=1),
                A.GaussNoise(std_range=(0.01, 0.03), p=1)]
    if kind == "noisy":
        return [A.GaussNoise(std_range=(0.08, 0.14), p=1)]
    if kind == "rainy":
        # RandomRain documents slant in degrees but shifts the drop's end by that many pixels (at most
        # 45): +-0.36 drop lengths is +-20 degrees.
        length = max(5, round(0.12 * s))
        slant = min(45.0, 0.36 * length)
        return [A.RandomRain(slant_range=(-slant, slant), drop_length=length, drop_width=max(1, round(s / 250)),
                             drop_color=(170, 170, 170), blur_value=1, brightness_coefficient=0.85,
                             rain_type="heavy", p=1)]
    if kind == "resized":
        return [A.Downscale(scale_range=(0.2, 0.35),
                            interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}, p=1)]
    if kind == "sunny":
        return [A.RandomGamma(gamma_limit=(55, 80), p=1),
                A.RandomBrightnessContrast(brightness_limit=(0.08, 0.2), contrast_limit=(0.0, 0.2), p=1),
                A.RandomSunFlare(flare_roi=(0, 0, 1, 0.4), src_radius=max(10, round(0.5 * s)), src_color=(255, 250, 235),
                                 num_flare_circles_range=(3, 6), method="physics_based", p=0.5)]
    raise ValueError(f"Unknown distortion {kind!r}; expected one of {', '.join(DISTORTIONS)}.")


def _seed(seed: int | np.random.Generator | None) -> int:
    """An integer seed: ``seed`` itself, drawn from a generator, or fresh entropy (never the global state)."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**63))
    return int(np.random.default_rng().integers(2**63)) if seed is None else int(seed)


def distort(image: Image.Image, kind: str, seed: int | np.random.Generator | None = None) -> Image.Image:
    """``image`` under one FACECOM distortion (``DISTORTIONS``), as RGB of the same size.

    An integer ``seed`` (>= 0) gives the same output every time; a generator is advanced by one draw.
    """
    array = np.asarray(to_rgb(image))
    pipeline = A.Compose(_transforms(kind, *array.shape[:2]), seed=_seed(seed))
    return Image.fromarray(pipeline(image=array)["image"])


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    kinds = tuple(kinds)
    unknown = sorted(set(kinds) - set(DISTORTIONS))
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {DISTORTIONS}; got unknown {unknown}.")
    return kinds


@dataclass
class RandomDistortion:
    """With probability ``p``, one of ``kinds`` chosen uniformly (torch's RNG, so loader seeding holds).

    For PIL images: place it in a torchvision ``v2.Compose`` before ``ToImage``.
    """

    p: float = 0.5
    kinds: Sequence[str] = DISTORTIONS

    def __post_init__(self) -> None:
        self.kinds = _check_kinds(self.kinds)
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p must be in [0, 1]; got {self.p}.")

    def __call__(self, image: Image.Image) -> Image.Image:
        if torch.rand(()).item() >= self.p:
            return image
        kind = self.kinds[int(torch.randint(len(self.kinds), ()))]
        return distort(image, kind, int(torch.randint(2**62, ())))


# ------------------------------------------------------------------------------------------- folders
def _key_seed(seed: int, key: str, kind: str) -> int:
    """A seed for (seed, image key, kind) that does not depend on the order images are written in."""
    digest = hashlib.blake2b(f"{seed}\0{key}\0{kind}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temp_path)``, then move the result to ``path`` in one step."""
    temp = path.with_name(f".{path.name}.tmp")
    write(temp)
    os.replace(temp, path)
    return path


def _save_jpeg(image: Image.Image, path: Path) -> None:
    image.save(path, "JPEG", quality=JPEG_QUALITY)


def _check_target(out_dir: Path, rows: list[tuple[Path, str, str]]) -> None:
    """Refuse an ``out_dir`` inside the sources' folder tree, or one that already holds files.

    The tree's root is the folder above the identity folders (``<root>/<identity>/x.jpg``), else the
    images' own folder, joined over all images.
    """
    roots = [path.parent.parent if path.parent.name == identity else path.parent for path, identity, _ in rows]
    tree = Path(os.path.commonpath(roots)) if roots else None
    if tree is not None and (out_dir == tree or tree in out_dir.parents):
        raise ValueError(f"out_dir {out_dir} is inside the source images' folder tree {tree}; "
                         "write the distorted copy to a folder outside it.")
    if out_dir.exists() and any(out_dir.iterdir()):
        state = ("holds a finished distorted copy" if (out_dir / _MARKER).exists()
                 else f"holds an interrupted build (no {_MARKER} marker)")
        raise FileExistsError(f"{out_dir} {state}; pick a new folder or delete this one.")


def _check_names(faces: pd.DataFrame) -> list[tuple[Path, str, str]]:
    """(source path, identity, stem) per row; identities must be plain folder names, stems unique."""
    missing = {"path", "identity"} - set(faces.columns)
    if missing:
        raise ValueError(f"faces needs columns 'path' and 'identity'; missing {sorted(missing)}.")
    rows = [(Path(p).resolve(), str(i), Path(p).stem) for p, i in zip(faces["path"], faces["identity"])]
    bad = sorted({i for _, i, _ in rows if i in ("", ".", "..") or "/" in i or os.sep in i})
    if bad:
        raise ValueError(f"identities must be plain folder names; got {bad[:5]}.")
    names = Counter(f"{i}/{s}.jpg" for _, i, s in rows)
    clashes = sorted(name for name, n in names.items() if n > 1)
    if clashes:
        raise ValueError(f"several images would be written as the same file: {clashes[:5]}.")
    return rows


def _write_face(source: Path, folder: Path, stem: str, kinds: tuple[str, ...], seed: int) -> list[tuple]:
    """The clean copy and each distorted copy of one face: [(path, identity, distortion), ...]."""
    (folder / "distortion").mkdir(parents=True, exist_ok=True)
    image = load_rgb(source)
    copy = partial(shutil.copyfile, source) if source.suffix.lower() in (".jpg", ".jpeg") else partial(_save_jpeg, image)
    written = [(str(_atomic(folder / f"{stem}.jpg", copy)), folder.name, "clean")]
    for kind in kinds:
        out = distort(image, kind, _key_seed(seed, f"{folder.name}/{stem}", kind))
        path = _atomic(folder / "distortion" / f"{stem}_{kind}.jpg", partial(_save_jpeg, out))
        written.append((str(path), folder.name, kind))
    return written


def distort_folder(faces: pd.DataFrame, out_dir: Path, kinds: Sequence[str] = DISTORTIONS, seed: int = 0,
                   progress: bool = True) -> pd.DataFrame:
    """Write ``faces`` (columns ``path``, ``identity``) in FACECOM Task B's layout under ``out_dir``.

    ``<identity>/<stem>.jpg`` is the clean image (JPEGs copied, others re-encoded at quality 95) and
    ``<identity>/distortion/<stem>_<kind>.jpg`` each distorted copy, seeded by (seed, identity/stem,
    kind), so the result does not depend on row order or on where the source folder is mounted.
    Returns ``[path, identity, distortion]`` (``clean`` or the kind), one row per written file;
    ``out_dir/.complete`` marks a finished build.
    """
    kinds = _check_kinds(kinds)
    rows = _check_names(faces)
    out_dir = Path(out_dir).resolve()
    _check_target(out_dir, rows)
    written = []
    for source, identity, stem in tqdm(rows, desc="distort", unit="img", disable=not progress):
        written += _write_face(source, out_dir / identity, stem, kinds, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic(out_dir / _MARKER, lambda t: t.write_text(f"{len(written)} files, kinds {list(kinds)}, seed {seed}\n"))
    return pd.DataFrame(written, columns=["path", "identity", "distortion"])
