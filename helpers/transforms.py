"""Train/eval transform recipes per model family (torchvision.transforms.v2), MixUp/CutMix and previews.

Every recipe takes a PIL RGB image (as ``helpers.imageio.load_rgb`` returns) and gives a normalised float
tensor ``C x size x size``. Train variants augment; eval variants resize and centre-crop deterministically.
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


def fixed_image_standardization(x: torch.Tensor) -> torch.Tensor:
    """facenet-pytorch's standardisation of a [0, 1] tensor: ``(x * 255 - 127.5) / 128``."""
    return (x * 255 - 127.5) / 128


@dataclass(frozen=True)
class Recipe:
    """A named augmentation recipe: its default size, normalisation and where it comes from."""

    name: str
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    steps: str
    source: str


RECIPES = {
    "hw2p2": Recipe(
        "hw2p2", 224, IMAGENET_MEAN, IMAGENET_STD,
        steps="RandomResizedCrop(0.8-1) > HorizontalFlip > RandomPerspective(0.2, p=0.3) > ColorJitter(0.2)"
        " > RandAugment(2 ops, magnitude 9) > RandomRotation(10) > Normalize(ImageNet) > RandomErasing(0.25)",
        source="CMU 11-785 HW2P2 starter notebook's suggested torchvision list; mild magnitudes for faces.",
    ),
    "imagenet": Recipe(
        "imagenet", 224, IMAGENET_MEAN, IMAGENET_STD,
        steps="train: RandomResizedCrop(0.7-1) > HorizontalFlip > Normalize; "
        "eval: Resize(size/0.875) > CenterCrop > Normalize",
        source="timm/torchvision ImageNet evaluation (crop_pct 0.875) with a light fine-tuning augmentation.",
    ),
    "facenet": Recipe(
        "facenet", 160, FACENET_MEAN, FACENET_STD,
        steps="train: RandomResizedCrop(0.85-1, ratio 0.9-1.1) > HorizontalFlip > fixed standardisation; "
        "eval: Resize > CenterCrop > fixed standardisation",
        source="facenet-pytorch InceptionResnetV1 (160 px MTCNN crops, fixed_image_standardization).",
    ),
    "fairface": Recipe(
        "fairface", 192, IMAGENET_MEAN, IMAGENET_STD,
        steps="Resize > CenterCrop > HorizontalFlip > RandomAffine(10 deg, 5% shift, 0.95-1.05) > "
        "ColorJitter(0.2) > Normalize",
        source="FairFace (Karkkainen & Joo 2021): attributes from padded face crops, ImageNet-pretrained.",
    ),
    "adience": Recipe(
        "adience", 192, IMAGENET_MEAN, IMAGENET_STD,
        steps="as fairface",
        source="Levi & Hassner 2015 Adience age/gender: flips and small shifts on aligned faces.",
    ),
}  # fmt: skip


def get_recipe(name: str) -> Recipe:
    """The :class:`Recipe` called ``name``, with the known names in the error."""
    if name not in RECIPES:
        raise KeyError(f"Unknown transform recipe {name!r}; known: {sorted(RECIPES)}.")
    return RECIPES[name]


def _finish(r: Recipe) -> list:
    # geometric and colour steps run before this on the PIL image (several times faster than on tensors)
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(r.mean, r.std)]


def _train_steps(r: Recipe, size: int) -> list:
    if r.name == "hw2p2":
        return [
            v2.RandomResizedCrop(size, scale=(0.8, 1.0)),
            v2.RandomHorizontalFlip(),
            v2.RandomPerspective(distortion_scale=0.2, p=0.3),
            v2.ColorJitter(0.2, 0.2, 0.2, 0.05),
            v2.RandAugment(num_ops=2, magnitude=9),
            v2.RandomRotation(10),
            *_finish(r),
            v2.RandomErasing(p=0.25),
        ]
    if r.name == "imagenet":
        return [v2.RandomResizedCrop(size, scale=(0.7, 1.0)), v2.RandomHorizontalFlip(), *_finish(r)]
    if r.name == "facenet":
        return [
            v2.RandomResizedCrop(size, scale=(0.85, 1.0), ratio=(0.9, 1.1)),
            v2.RandomHorizontalFlip(),
            *_finish(r),
        ]
    return [
        v2.Resize(size),
        v2.CenterCrop(size),
        v2.RandomHorizontalFlip(),
        v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.95, 1.05)),
        v2.ColorJitter(0.2, 0.2, 0.2),
        *_finish(r),
    ]


def _eval_steps(r: Recipe, size: int) -> list:
    resize = round(size / 0.875) if r.name == "imagenet" else size
    return [v2.Resize(resize), v2.CenterCrop(size), *_finish(r)]


def build(recipe: str, image_size: int | None = None, train: bool = True) -> v2.Compose:
    """The train or eval transform of recipe ``recipe`` at ``image_size`` (default: the recipe's)."""
    r = get_recipe(recipe)
    size = image_size or r.image_size
    steps = _train_steps(r, size) if train else _eval_steps(r, size)
    return v2.Compose(steps)


def denormalize(x: torch.Tensor, recipe: str) -> torch.Tensor:
    """Undo a recipe's normalisation (``C x H x W`` or a batch) into [0, 1] for display."""
    r = get_recipe(recipe)
    mean = torch.tensor(r.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.tensor(r.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x * std + mean).clamp(0, 1)


def preview(
    image: Image.Image | str | Path,
    recipe: str,
    image_size: int | None = None,
    n: int = 8,
    seed: int | None = 0,
) -> list[torch.Tensor]:
    """``n`` train-time augmentations of ``image`` as float ``C x H x W`` tensors in [0, 1] for display.

    ``seed`` makes the draws repeatable without touching the global random state.
    """
    if not isinstance(image, Image.Image):
        image = load_rgb(image)
    transform = build(recipe, image_size, train=True)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return [denormalize(transform(image), recipe) for _ in range(n)]


def step_previews(
    image: Image.Image | str | Path, recipe: str, image_size: int | None = None, n: int = 4, seed: int = 0
) -> dict[str, list[torch.Tensor]]:
    """Each augmentation step of a train recipe applied alone, ``n`` draws each, as [0, 1] tensors."""
    if not isinstance(image, Image.Image):
        image = load_rgb(image)
    r = get_recipe(recipe)
    size = image_size or r.image_size
    base = v2.Compose([v2.ToImage(), v2.Resize(size), v2.CenterCrop(size), v2.ToDtype(torch.float32, scale=True)])
    x = base(image)
    steps = [t for t in _train_steps(r, size) if not isinstance(t, (v2.ToImage, v2.ToDtype, v2.Normalize))]
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


def mixup_cutmix(num_classes: int, mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0) -> Callable:
    """A DataLoader ``collate_fn`` mixing each batch with MixUp or CutMix (torchvision v2); soft labels."""
    return MixCollate(num_classes, mixup_alpha, cutmix_alpha)
