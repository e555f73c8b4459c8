"""Train/eval transforms (torchvision.transforms.v2 on PIL images): augmentation by strength level,
normalisation by model family, MixUp/CutMix, and previews.

``build(augment, image_size, train, norm)``: ``augment`` is a strength level (``AUGMENTS``: none, light,
medium, heavy), ``norm`` the normalisation the backbone was trained with (``NORMS``: ImageNet mean/std, or
facenet's fixed standardisation). The eval transform of every level resizes the shorter side and centre-crops,
with no randomness. ``helpers.gpu_augment`` runs the same levels batched on the GPU.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import default_collate
from torchvision.transforms import v2

from helpers.imageio import load_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# facenet-pytorch's fixed_image_standardization, (x * 255 - 127.5) / 128, written as a Normalize on [0, 1].
FACENET_MEAN = (127.5 / 255,) * 3
FACENET_STD = (128 / 255,) * 3
NORMS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "facenet": (FACENET_MEAN, FACENET_STD)}
CROP_SCALE = (0.8, 1.0)  # random resized crop: share of the face crop kept
FACE_RATIO = (0.9, 1.1)  # aspect ratios of that crop: faces are not stretched much


@dataclass(frozen=True)
class Augment:
    """One augmentation level: its steps in words and where they come from."""

    name: str
    steps: str
    source: str


AUGMENTS = {
    "none": Augment("none", "Resize > CenterCrop (the eval transform)", "no augmentation"),
    "light": Augment(
        "light", "RandomResizedCrop(0.8-1, ratio 0.9-1.1) > HorizontalFlip",
        "the usual fine-tuning augmentation (timm/torchvision); the plain loops of bench/ use about this"),
    "medium": Augment(
        "medium", "light > RandomRotation(10) > ColorJitter(0.2, 0.2, 0.2)",
        "FairFace / Adience practice: flips, small rotations and shifts, colour jitter"),
    "heavy": Augment(
        "heavy", "RandomResizedCrop(0.8-1) > HorizontalFlip > RandomPerspective(0.2, p=0.3) > ColorJitter(0.2, "
        "hue 0.05) > RandAugment(2 ops, magnitude 9) > RandomRotation(10) > Normalize > RandomErasing(0.25)",
        "the CMU 11-785 HW2P2 starter list at mild magnitudes; for long runs on large sets (see recipes)"),
}


def _check(augment: str, norm: str) -> None:
    if augment not in AUGMENTS:
        raise KeyError(f"Unknown augmentation level {augment!r}; known: {list(AUGMENTS)}.")
    if norm not in NORMS:
        raise KeyError(f"Unknown normalisation {norm!r}; known: {list(NORMS)}.")


def _finish(norm: str) -> list:
    # geometric and colour steps run before this on the PIL image (several times faster than on tensors)
    mean, std = NORMS[norm]
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def _crop(size: int, ratio: tuple[float, float] = FACE_RATIO) -> v2.RandomResizedCrop:
    return v2.RandomResizedCrop(size, scale=CROP_SCALE, ratio=ratio)


def _augment_steps(augment: str, size: int) -> list:
    """The random steps of a level, before normalisation."""
    if augment == "light":
        return [_crop(size), v2.RandomHorizontalFlip()]
    if augment == "medium":
        return [_crop(size), v2.RandomHorizontalFlip(), v2.RandomRotation(10), v2.ColorJitter(0.2, 0.2, 0.2)]
    return [_crop(size, ratio=(3 / 4, 4 / 3)), v2.RandomHorizontalFlip(),
            v2.RandomPerspective(distortion_scale=0.2, p=0.3), v2.ColorJitter(0.2, 0.2, 0.2, 0.05),
            v2.RandAugment(num_ops=2, magnitude=9), v2.RandomRotation(10)]


def _eval_steps(size: int) -> list:
    return [v2.Resize(size), v2.CenterCrop(size)]


def build(augment: str, image_size: int, train: bool = True, norm: str = "imagenet") -> v2.Compose:
    """The train transform of level ``augment`` (or, ``train=False``, the eval transform) at ``image_size``,
    ending in the ``norm`` normalisation."""
    _check(augment, norm)
    if not train or augment == "none":
        return v2.Compose([*_eval_steps(image_size), *_finish(norm)])
    erasing = [v2.RandomErasing(p=0.25)] if augment == "heavy" else []
    return v2.Compose([*_augment_steps(augment, image_size), *_finish(norm), *erasing])


def denormalize(x: torch.Tensor, norm: str = "imagenet") -> torch.Tensor:
    """Undo a normalisation (``C x H x W`` or a batch) into [0, 1] for display."""
    mean, std = (torch.tensor(v, dtype=x.dtype, device=x.device).view(-1, 1, 1) for v in NORMS[norm])
    return (x * std + mean).clamp(0, 1)


def _as_image(image: Image.Image | str | Path) -> Image.Image:
    return image if isinstance(image, Image.Image) else load_rgb(image)


def preview(image: Image.Image | str | Path, augment: str, image_size: int, n: int = 8, seed: int | None = 0,
            norm: str = "imagenet") -> list[torch.Tensor]:
    """``n`` train-time augmentations of ``image`` as float ``C x H x W`` tensors in [0, 1] for display;
    ``seed`` makes the draws repeatable without touching the global random state."""
    transform = build(augment, image_size, train=True, norm=norm)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return [denormalize(transform(_as_image(image)), norm) for _ in range(n)]


def step_previews(image: Image.Image | str | Path, augment: str, image_size: int, n: int = 4,
                  seed: int = 0) -> dict[str, list[torch.Tensor]]:
    """Each random step of a level applied alone to the eval-resized image, ``n`` draws each, in [0, 1]."""
    _check(augment, "imagenet")
    base = v2.Compose([v2.ToImage(), *_eval_steps(image_size), v2.ToDtype(torch.float32, scale=True)])
    x = base(_as_image(image))
    steps = [] if augment == "none" else _augment_steps(augment, image_size)
    steps += [v2.RandomErasing(p=1.0)] if augment == "heavy" else []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {type(t).__name__: [t(x).clamp(0, 1) for _ in range(n)] for t in steps}


class MixCollate:
    """A picklable ``collate_fn`` applying MixUp or CutMix (one, at random, per batch; an alpha of 0 leaves
    that one out); labels become soft."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0):
        mixers = [mix(alpha=alpha, num_classes=num_classes)
                  for mix, alpha in ((v2.MixUp, mixup_alpha), (v2.CutMix, cutmix_alpha)) if alpha > 0]
        if not mixers:
            raise ValueError("MixUp/CutMix need mixup_alpha > 0 or cutmix_alpha > 0.")
        self.mix = v2.RandomChoice(mixers)

    def __call__(self, batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = default_collate(batch)
        return self.mix(images, labels)


def mixup_cutmix(num_classes: int, mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0) -> Callable | None:
    """A DataLoader ``collate_fn`` mixing each batch with MixUp or CutMix (torchvision v2; soft labels), or
    None when both alphas are 0."""
    return MixCollate(num_classes, mixup_alpha, cutmix_alpha) if (mixup_alpha or cutmix_alpha) else None
