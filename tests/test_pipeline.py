"""The GPU input path as the notebooks build it (``data.make_loaders(..., pipeline="gpu")``), run on CPU tensors:
the same rows, targets and eval images as the CPU path, a cache outside the data, and a model that learns."""
import pytest
import torch

from helpers import classification, config, data, packed, recipes

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hw2p2():
    return data.load("hw2p2")


def test_gpu_path_matches_the_cpu_path_for_evaluation(hw2p2):
    dev = hw2p2["dev"].head(40)
    gpu = data.loader(dev, 32, 16, train=False, pipeline="gpu")
    cpu = data.loader(dev, 32, 16, train=False, pipeline="cpu")
    assert isinstance(gpu, packed.DeviceLoader) and len(gpu) == len(cpu)
    (x_gpu, y_gpu), (x_cpu, y_cpu) = next(iter(gpu)), next(iter(cpu))
    assert x_gpu.dtype == torch.float32 and x_gpu.shape == x_cpu.shape == (16, 3, 32, 32)
    assert torch.equal(y_gpu, y_cpu)
    assert (x_gpu - x_cpu).abs().mean() < 0.1  # the same crops, through one JPEG re-encode (normalised units)
    assert gpu.dataset.frame.path.tolist() == dev.path.tolist()
    assert all(p.is_relative_to(config.cache_dir()) for p in (config.cache_dir() / "packs").iterdir())


def test_gpu_path_training_batches_are_augmented_and_reproducible(hw2p2):
    train = data.loader(hw2p2["train"].head(64), 32, 16, train=True, augment="heavy", pipeline="gpu",
                        mixup=(0.2, 1.0), num_classes=len(hw2p2.classes))
    train.seed(3)
    first = next(iter(train))
    train.seed(3)
    again = next(iter(train))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert first[1].shape == (16, len(hw2p2.classes))  # soft MixUp/CutMix labels
    assert first[1].sum(1).allclose(torch.ones(16))


def test_a_model_learns_through_the_gpu_path(hw2p2, tmp_path):
    recipe = recipes.resolve("03_convnext_from_scratch", epochs=4, pipeline="gpu")
    model = classification.build_model(recipe, len(hw2p2.classes))
    parts = classification.splits(hw2p2, recipe)
    batches = classification.loaders(parts, recipe, model, len(hw2p2.classes))
    assert isinstance(batches["train"], packed.DeviceLoader) and not isinstance(batches["test"], packed.DeviceLoader)
    history = classification.fit(model, recipe, batches, tmp_path)
    assert history.val_acc.max() > 5 / 24  # chance is 1/24
