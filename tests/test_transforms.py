"""transforms: recipe shapes and determinism, normalisation round trips, MixUp/CutMix collate, previews."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from helpers import transforms


def face_like(width: int = 120, height: int = 150, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] //= 2  # an asymmetric picture, so flips are visible
    return Image.fromarray(pixels)


@pytest.mark.parametrize("name", sorted(transforms.RECIPES))
@pytest.mark.parametrize("train", [True, False])
def test_recipe_shapes(name, train):
    out = transforms.build(name, 48, train=train)(face_like())
    assert out.shape == (3, 48, 48) and out.dtype == torch.float32
    default = transforms.build(name, train=train)(face_like())
    assert default.shape[-1] == transforms.RECIPES[name].image_size


@pytest.mark.parametrize("name", sorted(transforms.RECIPES))
def test_eval_is_deterministic_and_train_is_random(name):
    image = face_like()
    evaluate, train = transforms.build(name, 64, train=False), transforms.build(name, 64, train=True)
    assert torch.equal(evaluate(image), evaluate(image))
    torch.manual_seed(0)
    draws = [train(image) for _ in range(8)]
    assert any(not torch.allclose(draws[0], d) for d in draws[1:])


def test_fixed_image_standardization_matches_facenet_recipe():
    assert transforms.fixed_image_standardization(torch.tensor(0.0)) == pytest.approx(-127.5 / 128)
    assert transforms.fixed_image_standardization(torch.tensor(1.0)) == pytest.approx(127.5 / 128)
    image = face_like()
    unit = v2.Compose(
        [v2.ToImage(), v2.Resize(160), v2.CenterCrop(160), v2.ToDtype(torch.float32, scale=True)]
    )
    expected = transforms.fixed_image_standardization(unit(image))
    assert torch.allclose(transforms.build("facenet", train=False)(image), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["imagenet", "facenet", "fairface"])
def test_denormalize_inverts_eval_normalisation(name):
    image = face_like()
    size = 64
    resize = round(size / 0.875) if name == "imagenet" else size
    unit = v2.Compose(
        [v2.Resize(resize), v2.CenterCrop(size), v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    )
    restored = transforms.denormalize(transforms.build(name, size, train=False)(image), name)
    assert torch.allclose(restored, unit(image), atol=1e-5)


def test_unknown_recipe_names_known_ones():
    with pytest.raises(KeyError, match="hw2p2"):
        transforms.build("nope", 32)


def test_recipes_document_steps_and_source():
    for r in transforms.RECIPES.values():
        assert r.steps and r.source and r.image_size > 0


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
    first = transforms.preview(face_like(), "hw2p2", 48, n=5, seed=1)
    assert torch.equal(state, torch.get_rng_state())
    second = transforms.preview(face_like(), "hw2p2", 48, n=5, seed=1)
    assert len(first) == 5 and all(t.shape == (3, 48, 48) for t in first)
    assert all(0 <= t.min() and t.max() <= 1 for t in first)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], first[1])


def test_step_previews_cover_each_augmentation():
    from PIL import Image

    image = Image.new("RGB", (80, 64), (120, 90, 60))
    previews = transforms.step_previews(image, "hw2p2", image_size=48, n=2)
    assert "RandAugment" in previews and "RandomErasing" in previews and "Normalize" not in previews
    for views in previews.values():
        assert len(views) == 2 and all(v.shape == (3, 48, 48) and 0 <= v.min() and v.max() <= 1 for v in views)


def test_mixup_only_when_cutmix_alpha_is_zero():
    collate = transforms.mixup_cutmix(3, mixup_alpha=0.4, cutmix_alpha=0.0)
    _, soft = collate([(torch.rand(3, 8, 8), i % 3) for i in range(4)])
    assert soft.shape == (4, 3) and torch.allclose(soft.sum(1), torch.ones(4))
    with pytest.raises(ValueError, match="alpha"):
        transforms.mixup_cutmix(3, 0.0, 0.0)
