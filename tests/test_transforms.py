"""transforms: level shapes and determinism, the eval transform, normalisation round trips, MixUp/CutMix
collate, previews."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from helpers import transforms

# the CMU 11-785 HW2P2 starter list, in order: what the "heavy" level is
HW2P2_STEPS = ["RandomResizedCrop", "RandomHorizontalFlip", "RandomPerspective", "ColorJitter", "RandAugment",
               "RandomRotation", "ToImage", "ToDtype", "Normalize", "RandomErasing"]


def face_like(width: int = 120, height: int = 150, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] //= 2  # an asymmetric picture, so flips are visible
    return Image.fromarray(pixels)


def unit(size: int) -> v2.Compose:
    """Resize + CenterCrop to ``size`` and [0, 1] floats: the eval transform before its normalisation."""
    return v2.Compose([v2.Resize(size), v2.CenterCrop(size), v2.ToImage(),
                       v2.ToDtype(torch.float32, scale=True)])


@pytest.mark.parametrize("augment", sorted(transforms.AUGMENTS))
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("norm", sorted(transforms.NORMS))
def test_level_shapes(augment, train, norm):
    for size in (48, 64):
        out = transforms.build(augment, size, train=train, norm=norm)(face_like())
        assert out.shape == (3, size, size) and out.dtype == torch.float32


@pytest.mark.parametrize("augment", sorted(set(transforms.AUGMENTS) - {"none"}))
def test_eval_is_deterministic_and_train_is_random(augment):
    image = face_like()
    evaluate, train = transforms.build(augment, 64, train=False), transforms.build(augment, 64, train=True)
    assert torch.equal(evaluate(image), evaluate(image))
    torch.manual_seed(0)
    draws = [train(image) for _ in range(8)]
    assert any(not torch.allclose(draws[0], d) for d in draws[1:])


def test_level_none_trains_on_the_eval_transform():
    image = face_like()
    torch.manual_seed(0)
    draws = [transforms.build("none", 64, train=True)(image) for _ in range(4)]
    expected = transforms.build("none", 64, train=False)(image)
    assert all(torch.equal(d, expected) for d in draws)


def test_facenet_norm_is_facenets_fixed_standardization():
    """facenet-pytorch's fixed_image_standardization: (x * 255 - 127.5) / 128 on 0..255 pixel values."""
    image = face_like()
    expected = (unit(160)(image) * 255 - 127.5) / 128
    evaluated = transforms.build("none", 160, train=False, norm="facenet")(image)
    assert torch.allclose(evaluated, expected, atol=1e-5)
    facenet = transforms.build("none", 8, train=False, norm="facenet")
    for pixel, value in ((0, -127.5 / 128), (255, 127.5 / 128)):
        assert torch.allclose(facenet(Image.new("RGB", (20, 20), (pixel,) * 3)), torch.full((3, 8, 8), value),
                              atol=1e-6)


@pytest.mark.parametrize("augment", sorted(transforms.AUGMENTS))
@pytest.mark.parametrize("norm", sorted(transforms.NORMS))
def test_eval_is_resize_crop_normalize_and_denormalize_inverts_it(augment, norm):
    image, size = face_like(), 64
    evaluated = transforms.build(augment, size, train=False, norm=norm)(image)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in transforms.NORMS[norm])
    assert torch.allclose(evaluated, (unit(size)(image) - mean) / std, atol=1e-5)
    assert torch.allclose(transforms.denormalize(evaluated, norm), unit(size)(image), atol=1e-5)


def test_unknown_level_or_norm_names_known_ones():
    with pytest.raises(KeyError, match="heavy"):
        transforms.build("hw2p2", 32)
    with pytest.raises(KeyError, match="facenet"):
        transforms.build("light", 32, norm="vggface2")


def test_levels_document_steps_and_source():
    assert list(transforms.AUGMENTS) == ["none", "light", "medium", "heavy"]
    for name, level in transforms.AUGMENTS.items():
        assert level.name == name and level.steps and level.source


def test_heavy_is_the_hw2p2_list():
    steps = transforms.build("heavy", 48, train=True).transforms
    assert [type(t).__name__ for t in steps] == HW2P2_STEPS


def test_mixup_cutmix_collate_gives_soft_labels():
    # DataLoader workers started with spawn pickle the collate_fn
    collate = pickle.loads(pickle.dumps(transforms.mixup_cutmix(num_classes=5)))
    batch = [(torch.rand(3, 16, 16), i % 5) for i in range(8)]
    torch.manual_seed(0)
    soft = []
    for _ in range(6):
        images, labels = collate(batch)
        assert images.shape == (8, 3, 16, 16) and labels.shape == (8, 5)
        assert torch.allclose(labels.sum(1), torch.ones(8))
        soft.append((labels.max(1).values < 1).any())
    assert any(soft), "some draws must mix two labels"


def test_preview_is_repeatable_in_unit_range_and_keeps_global_rng():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = transforms.preview(face_like(), "heavy", 48, n=5, seed=1)
    assert torch.equal(state, torch.get_rng_state())
    second = transforms.preview(face_like(), "heavy", 48, n=5, seed=1)
    assert len(first) == 5 and all(t.shape == (3, 48, 48) for t in first)
    assert all(0 <= t.min() and t.max() <= 1 for t in first)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], first[1])
    facenet = transforms.preview(face_like(), "heavy", 48, n=5, seed=1, norm="facenet")
    assert all(0 <= t.min() and t.max() <= 1 for t in facenet)


def test_step_previews_cover_each_augmentation():
    image = Image.new("RGB", (80, 64), (120, 90, 60))
    previews = transforms.step_previews(image, "heavy", image_size=48, n=2)
    assert list(previews) == [s for s in HW2P2_STEPS if s not in ("ToImage", "ToDtype", "Normalize")]
    for views in previews.values():
        assert len(views) == 2 and all(v.shape == (3, 48, 48) and 0 <= v.min() and v.max() <= 1 for v in views)
    assert transforms.step_previews(image, "none", image_size=48) == {}
    assert list(transforms.step_previews(image, "light", image_size=48)) == ["RandomResizedCrop",
                                                                             "RandomHorizontalFlip"]


def test_mixup_only_when_cutmix_alpha_is_zero():
    collate = transforms.mixup_cutmix(3, mixup_alpha=0.4, cutmix_alpha=0.0)
    _, soft = collate([(torch.rand(3, 8, 8), i % 3) for i in range(4)])
    assert soft.shape == (4, 3) and torch.allclose(soft.sum(1), torch.ones(4))
    assert transforms.mixup_cutmix(3, 0.0, 0.0) is None  # no mixing: the loader keeps its default collate
    with pytest.raises(ValueError, match="alpha"):
        transforms.MixCollate(3, 0.0, 0.0)
