"""packed: pack/unpack round trip, cache keys, refusals, unreadable sources, datasets in worker processes and
the device loader on CPU."""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from helpers.gpu_augment import BatchAugment
from helpers.packed import (
    AugmentedBatches,
    DeviceLoader,
    PackedDataset,
    PackedImages,
    PackError,
    StalePackError,
    make_device_loader,
    meta_file,
    pack,
)

SIZE = 32
# torchvision 0.29 deprecates its JPEG decoder in favour of TorchCodec (see helpers.packed)
pytestmark = [pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning"),
              pytest.mark.usefixtures("one_thread")]


def smooth_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 200 / width, y * 200 / height, (x + y) * 100 / (width + height)], -1)
    return Image.fromarray((base + rng.integers(0, 40, (1, 1, 3))).astype(np.uint8))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Five JPEG/PNG images of mixed sizes (one large enough to be decoded at a reduced DCT scale)."""
    folder = tmp_path_factory.mktemp("images")
    sizes = [(40, 30), (32, 48), (64, 64), (400, 300), (50, 50)]
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"img{i}.{'png' if i == 4 else 'jpg'}"
        smooth_image(w, h, i).save(path, quality=98)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def packed(sources, tmp_path_factory):
    return pack(sources, tmp_path_factory.mktemp("cache") / "set.pack", SIZE, progress=False)


def reference(path) -> torch.Tensor:
    """torchvision's Resize(shorter side) + CenterCrop on the PIL image, as uint8 (3, SIZE, SIZE)."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = SIZE / min(w, h)
    image = image.resize((max(SIZE, int(w * scale)), max(SIZE, int(h * scale))), Image.Resampling.BILINEAR)
    left, top = round((image.width - SIZE) / 2), round((image.height - SIZE) / 2)
    array = np.asarray(image.crop((left, top, left + SIZE, top + SIZE)))
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def test_round_trip_is_close_to_the_pil_resize_and_crop(sources, packed):
    images = PackedImages(packed, sources, SIZE)
    assert len(images) == len(sources) and len(images.missing) == 0
    for i, path in enumerate(sources):
        image = images[i]
        assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.uint8
        error = (image.float() - reference(path).float()).abs().mean()
        assert error < 3, f"{path.name}: mean abs error {error:.2f} of 255"


def test_an_up_to_date_pack_is_reused_and_a_stale_one_refused(sources, packed):
    before = packed.stat().st_mtime_ns
    assert pack(sources, packed, SIZE, progress=False) == packed and packed.stat().st_mtime_ns == before
    with pytest.raises(StalePackError, match="other images"):
        PackedImages(packed, sources[::-1])
    with pytest.raises(StalePackError, match="px"):
        PackedImages(packed, sources, SIZE + 1)


def test_other_paths_rebuild_the_pack(sources, tmp_path):
    out = tmp_path / "p.pack"
    pack(sources[:2], out, SIZE, progress=False)
    pack(sources[1:], out, SIZE, progress=False)
    assert len(PackedImages(out, sources[1:])) == len(sources) - 1


def test_a_truncated_pack_is_refused(sources, tmp_path):
    out = pack(sources[:2], tmp_path / "p.pack", SIZE, progress=False)
    out.write_bytes(out.read_bytes()[:-10])
    with pytest.raises(StalePackError, match="disagree"):
        PackedImages(out)


def test_refuses_to_write_among_the_sources(sources):
    with pytest.raises(ValueError, match="source image folder"):
        pack(sources, sources[0].parent / "cache" / "x.pack", SIZE, progress=False)
    assert not (sources[0].parent / "cache").exists()


def test_unreadable_sources_are_named_or_recorded(sources, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    good = [folder / "a.jpg", folder / "b.jpg"]
    for source, copy in zip(sources, good):
        copy.write_bytes(source.read_bytes())
    empty, garbage = folder / "empty.jpg", folder / "garbage.jpg"
    empty.write_bytes(b"")
    garbage.write_bytes(b"not a jpeg at all")
    paths = [good[0], empty, good[1], garbage]
    with pytest.raises(PackError, match="empty.jpg.*garbage.jpg"):
        pack(paths, tmp_path / "out" / "p.pack", SIZE, progress=False)
    assert not list((tmp_path / "out").glob("*"))
    out = pack(paths, tmp_path / "out" / "p.pack", SIZE, progress=False, on_error="skip")
    assert json.loads(meta_file(out).read_text())["missing"] == [str(empty), str(garbage)]
    images = PackedImages(out, paths)
    assert images.missing.tolist() == [1, 3]
    with pytest.raises(KeyError):
        images[1]
    dataset = PackedDataset(out, targets=None)
    assert len(dataset) == 2 and [int(dataset[i][1]) for i in range(2)] == [0, 2]


def test_targets_like_face_dataset(packed):
    labels = PackedDataset(packed, targets=np.arange(5) * 10)
    assert int(labels[3][1]) == 30
    multi = PackedDataset(packed, targets={"age": torch.arange(5.0), "gender": torch.tensor([0, 1, 0, 1, 0])})
    assert set(multi[1][1]) == {"age", "gender"} and int(multi[1][1]["gender"]) == 1
    with pytest.raises(ValueError, match="targets"):
        PackedDataset(packed, targets=torch.arange(3))


def test_dataset_pickles_and_loads_in_worker_processes(packed):
    dataset = PackedDataset(packed, torch.arange(5))
    dataset[0]  # opens the map in this process; pickling must drop it
    clone = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(clone[2][0], dataset[2][0])
    loader = DataLoader(dataset, batch_size=2, num_workers=2)
    images, labels = zip(*loader)
    assert torch.cat(images).shape == (5, 3, SIZE, SIZE) and torch.cat(labels).tolist() == [0, 1, 2, 3, 4]


def test_device_loader_on_cpu(packed):
    augment = BatchAugment("heavy", 24, (0.5,) * 3, (0.25,) * 3)
    loader = make_device_loader(PackedDataset(packed, torch.arange(5)), 2, "cpu", augment, shuffle=True)
    assert isinstance(loader, DeviceLoader) and len(loader) == 3 == len(loader.loader)
    epochs = []
    for seed in (7, 7, 8):
        loader.seed(seed)
        epochs.append(list(loader))
    images, _ = epochs[0][0]
    assert images.dtype == torch.float32 and images.shape == (2, 3, 24, 24)
    assert images.min() >= -2 - 1e-5 and images.max() <= 2 + 1e-5
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(epochs[0], epochs[1]))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(epochs[0], epochs[2]))


def test_device_loader_mixes_labels(packed):
    augment = BatchAugment("light", 24, (0.5,) * 3, (0.25,) * 3, cutmix_alpha=1.0, num_classes=5)
    loader = DeviceLoader(DataLoader(PackedDataset(packed, torch.arange(5)), batch_size=5), "cpu", augment)
    _, soft = next(iter(loader))
    assert soft.shape == (5, 5) and torch.allclose(soft.sum(1), torch.ones(5))


def heavy_loader(packed, workers: int, mix: bool = False) -> DeviceLoader:
    alphas = {"cutmix_alpha": 1.0, "num_classes": 5} if mix else {}
    augment = BatchAugment("heavy", 24, (0.5,) * 3, (0.25,) * 3, **alphas)
    return make_device_loader(PackedDataset(packed, torch.arange(5)), 2, "cpu", augment, shuffle=True,
                              num_workers=workers)


def test_cpu_batches_are_augmented_in_the_workers_and_do_not_depend_on_them(packed):
    """On a CPU device the workers augment whole batches; the seeded epoch is the same with 0 or 2 workers."""
    epochs = {}
    for workers in (0, 2):
        loader = heavy_loader(packed, workers, mix=True)
        assert isinstance(loader.loader.dataset, AugmentedBatches) and loader.augment is None
        assert loader.batch_size == 2 and isinstance(loader.dataset, PackedDataset)
        loader.seed(11)
        epochs[workers] = list(loader)
    for (x0, y0), (x2, y2) in zip(epochs[0], epochs[2], strict=True):
        assert x0.shape[1:] == (3, 24, 24) and y0.shape == (len(x0), 5)  # CutMix soft labels
        assert torch.equal(x0, x2) and torch.equal(y0, y2)


class SameImage(torch.utils.data.Dataset):
    """One image under every index: what differs between batches is their augmentation alone."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        return torch.arange(3 * 20 * 20, dtype=torch.int64).remainder(251).to(torch.uint8).view(3, 20, 20), index


def test_a_batch_seed_is_mixed_with_its_first_index():
    """Each process of a data-parallel run holds its own part of a batch under the batch's one seed: the parts
    must still draw their own augmentations (and a part drawn again is the same)."""
    batches = AugmentedBatches(SameImage(), BatchAugment("heavy", 16, (0.5,) * 3, (0.25,) * 3))
    first, again = batches.__getitems__([(0, 9), (1, 9)])[0], batches.__getitems__([(0, 9), (1, 9)])[0]
    other_part = batches.__getitems__([(2, 9), (3, 9)])[0]
    assert torch.equal(first, again) and not torch.equal(first, other_part)


def test_cpu_batches_shard_under_accelerate():
    """What ``distributed.Parallel.loader`` does with a CPU-device loader: each process's shard takes its part
    of the same shuffled batches (seeded through accelerate's wrapper) and draws its own augmentations."""
    from accelerate.data_loader import prepare_data_loader

    loader = make_device_loader(SameImage(), 4, "cpu", BatchAugment("heavy", 16, (0.5,) * 3, (0.25,) * 3),
                                shuffle=True)
    loader.seed(3)
    whole = list(loader)
    parts = []
    for rank in (0, 1):
        shard = DeviceLoader(prepare_data_loader(loader.loader, num_processes=2, process_index=rank,
                                                 split_batches=True, put_on_device=False), "cpu")
        shard.seed(3)
        parts.append(list(shard))
    for (x0, y0), (x1, y1), (_, y) in zip(*parts, whole, strict=True):
        assert torch.cat([y0, y1]).tolist() == y.tolist() and not torch.equal(x0, x1)
