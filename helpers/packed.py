"""Images packed once into one file of small JPEGs, read back as uint8 tensors, and a loader that augments
whole batches on the training device.

``pack(paths, out_file, size)`` decodes every image once (large JPEGs at a reduced DCT scale through
``Image.draft``), resizes its shorter side to ``size``, centre-crops a square, re-encodes it as JPEG and
appends the bytes to ``out_file``. Beside it, ``<out_file>.idx.npy`` holds ``N + 1`` int64 offsets (image
``i`` is bytes ``offsets[i]:offsets[i + 1]``; an empty range marks an image that could not be read) and
``<out_file>.json`` what the pack was made from (a SHA-256 of the paths, the size, the quality, the count,
the byte total and the unreadable files). The three files are written to temporary names and renamed (the
JSON last), so an interrupted pack is never mistaken for a complete one; a pack whose JSON does not match
the requested paths and size is rebuilt by ``pack`` and refused by ``PackedImages``.

Workers then only read bytes and decode: ``PackedImages`` memory-maps the file (each process opens its own
map lazily, so it pickles into DataLoader workers) and decodes with ``torchvision.io.decode_jpeg``;
``PackedDataset`` pairs images with targets like ``FaceDataset``. ``make_device_loader`` builds the loader:
on a GPU, ``DeviceLoader`` moves uint8 batches to the device and runs a ``helpers.gpu_augment.BatchAugment``
there; on a CPU-only machine the workers decode *and* augment whole batches (``AugmentedBatches``, each batch
seeded from the epoch's seed by ``SeededBatches``, so the result does not depend on the number of workers) and
write them straight into the shared memory they travel in.

Choices, measured with ``bench/bench_loader.py`` on real UTKFace/Pins/FACECOM JPEGs at 224 px:
- JPEG quality 95 with Pillow's default 4:2:0 chroma: 14.6 KiB per image (2.1 GB for 140,000), 0.93 8-bit
  levels from the uncompressed crop; 4:4:4 costs 27% more bytes and 36% more decode time for 0.78 levels,
  quality 90 saves 29% of the bytes for 1.24 levels.
- ``torchvision.io.decode_jpeg``: 0.29 ms per image on one core against 0.51 ms for Pillow (0.41 / 0.66 ms on
  the H100 host). torchvision 0.29 deprecates it in favour of TorchCodec (a DeprecationWarning per call in
  __main__ only); Pillow is the drop-in fallback if it goes.
- Memory: packing holds at most one chunk of 1,024 encoded images (+6 MB RSS for 384 images on 2 threads,
  +37 MB for 768 on 16), so it does not grow with the dataset; reading every image back adds nothing to the
  process's own (anonymous) memory: the mapped file's pages are page cache, shared by the workers and given
  back under pressure, and show only as file-backed RSS.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import io
import json
import math
import mmap
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    default_collate,
    get_worker_info,
)
from torchvision.io import ImageReadMode, decode_jpeg
from tqdm.auto import tqdm

from helpers.batches import loader_batch_size, seed_loader_generators, to_device
from helpers.gpu_augment import BatchAugment
from helpers.imageio import BadImageError, to_rgb

PACK_VERSION = 1
# decode_jpeg warns on every call since torchvision 0.29 (TorchCodec replaces it); we use it knowingly (it is
# the fastest CPU decoder here) and Pillow is the fallback when it goes: one notice, not one per image.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)
_CHUNK = 1024  # images encoded per round: bounds the bytes held in memory while packing


class StalePackError(ValueError):
    """A pack that was made from other images or another size, or whose files are incomplete."""


class PackError(ValueError):
    """Some source images could not be read; ``bad`` maps each such path to the reason."""

    def __init__(self, bad: dict[str, str]):
        self.bad = bad
        shown = "; ".join(f"{path} ({reason})" for path, reason in list(bad.items())[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        super().__init__(f"{len(bad)} image(s) could not be read: {shown}{more}. Fix or remove them, or pass "
                         "on_error='skip' to pack the others and record these as missing.")


def index_file(pack_file: str | Path) -> Path:
    """The offsets file of a pack: ``<pack_file>.idx.npy``."""
    return Path(f"{pack_file}.idx.npy")


def meta_file(pack_file: str | Path) -> Path:
    """The JSON sidecar of a pack: ``<pack_file>.json``."""
    return Path(f"{pack_file}.json")


def paths_digest(paths: Iterable[str | os.PathLike]) -> str:
    """SHA-256 of the absolute paths, in order: what a pack is keyed by (with the size)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.abspath(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _check_outside_sources(out_file: Path, paths: Sequence[str]) -> None:
    """Refuse an ``out_file`` inside the folder of any source image or inside their common folder (unless that
    is a filesystem root): datasets may be read-only mounts, and a pack must never land among them."""
    folders = {os.path.dirname(p) for p in paths}
    if folders:
        common = os.path.commonpath(list(folders))
        if os.path.dirname(common) != common:
            folders.add(common)
    folders |= {os.path.realpath(f) for f in folders}
    for target in (out_file.parent.absolute(), out_file.parent.resolve()):
        for folder in (target, *target.parents):
            if str(folder) in folders:
                raise ValueError(f"Refusing to write the pack {out_file} inside the source image folder "
                                 f"{folder}; pass an output (cache) folder outside the dataset.")


def encode(path: str | os.PathLike, size: int, quality: int = 95) -> bytes:
    """One image as JPEG bytes: decoded at the smallest DCT scale that keeps both sides >= ``size``, converted
    to RGB, shorter side resized to ``size`` (bilinear, as torchvision's Resize) and centre-cropped square."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            image = to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadImageError(path, f"cannot be decoded ({err})") from err
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)
    image = image.resize(new_size, Image.Resampling.BILINEAR)
    left, top = round((new_size[0] - size) / 2), round((new_size[1] - size) / 2)
    buffer = io.BytesIO()
    image.crop((left, top, left + size, top + size)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _encode_or_error(args: tuple[str, int, int]) -> bytes | str:
    try:
        return encode(*args)
    except BadImageError as err:
        return err.reason


def _is_current(out_file: Path, meta: dict) -> bool:
    """True when a complete pack of the same key already sits at ``out_file``."""
    try:
        stored = json.loads(meta_file(out_file).read_text())
        return (all(stored.get(k) == v for k, v in meta.items()) and index_file(out_file).is_file()
                and out_file.stat().st_size == stored["bytes"])
    except (OSError, ValueError, KeyError):
        return False


def pack(paths: Sequence[str | os.PathLike], out_file: str | Path, size: int, quality: int = 95,
         workers: int | None = None, progress: bool = True, on_error: str = "raise") -> Path:
    """Pack ``paths`` (in order) into ``out_file`` as ``size`` x ``size`` JPEGs; returns ``out_file``.

    A complete pack of the same paths, size and quality at ``out_file`` is reused as is. Unreadable images
    raise a ``PackError`` naming them (nothing is written), or with ``on_error="skip"`` are recorded as
    missing (empty offset range, listed in the JSON). ``workers`` threads encode (default: the CPU count;
    Pillow releases the GIL while decoding, resizing and encoding).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    paths = [os.path.abspath(p) for p in paths]
    out_file = Path(out_file).absolute()
    _check_outside_sources(out_file, paths)
    meta = {"version": PACK_VERSION, "size": size, "quality": quality, "count": len(paths),
            "paths_sha256": paths_digest(paths)}
    if _is_current(out_file, meta):
        return out_file
    out_file.parent.mkdir(parents=True, exist_ok=True)
    offsets, bad = np.zeros(len(paths) + 1, dtype=np.int64), {}
    fd, tmp = tempfile.mkstemp(dir=out_file.parent, prefix=f".{out_file.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as data, ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool, \
                tqdm(total=len(paths), desc=f"pack {out_file.name}", unit="img", disable=not progress) as bar:
            for start in range(0, len(paths), _CHUNK):
                chunk = paths[start:start + _CHUNK]
                for i, result in enumerate(pool.map(_encode_or_error, [(p, size, quality) for p in chunk]),
                                           start):
                    if isinstance(result, str):
                        bad[paths[i]] = result
                    else:
                        data.write(result)
                    offsets[i + 1] = data.tell()
                bar.update(len(chunk))
        if bad and on_error == "raise":
            raise PackError(bad)
        meta.update(bytes=int(offsets[-1]), missing=list(bad))
        with open(f"{tmp}.idx.npy", "wb") as f:
            np.save(f, offsets)
        Path(f"{tmp}.json").write_text(json.dumps(meta, indent=1))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, out_file)
        os.replace(f"{tmp}.idx.npy", index_file(out_file))
        os.replace(f"{tmp}.json", meta_file(out_file))
    finally:
        for leftover in (tmp, f"{tmp}.idx.npy", f"{tmp}.json"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return out_file


class PackedImages:
    """Random access to a pack: ``images[i]`` is a ``uint8 (3, size, size)`` tensor decoded on the CPU.

    ``paths``/``size``, when given, must be what the pack was made from (``StalePackError`` otherwise).
    ``missing`` lists the positions of images that could not be read when packing (reading one raises
    ``KeyError``). Picklable: the memory map is opened lazily in each process.
    """

    def __init__(self, pack_file: str | Path, paths: Sequence[str | os.PathLike] | None = None,
                 size: int | None = None):
        self.file = Path(pack_file)
        try:
            self.meta = json.loads(meta_file(self.file).read_text())
            self.offsets = np.load(index_file(self.file))
            on_disk = self.file.stat().st_size
        except (OSError, ValueError) as err:
            raise StalePackError(f"{self.file} is not a complete pack ({err}); build it with pack()") from err
        if paths is not None and self.meta["paths_sha256"] != paths_digest(paths):
            raise StalePackError(f"{self.file} was packed from other images than the {len(paths)} given; "
                                 "rebuild it with pack() (or use another out_file).")
        if size is not None and self.meta["size"] != size:
            raise StalePackError(f"{self.file} holds {self.meta['size']} px images, not {size} px.")
        sizes = (int(self.offsets[-1]), self.meta["bytes"], on_disk)
        if len(self.offsets) != self.meta["count"] + 1 or len(set(sizes)) != 1:
            raise StalePackError(f"{self.file}, its index and its JSON disagree (interrupted or edited pack)")
        self.size = self.meta["size"]
        self.missing = np.flatnonzero(np.diff(self.offsets) == 0)
        self._map: mmap.mmap | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < len(self):
            raise IndexError(f"Image {i} of a pack of {len(self)}")
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        if start == end:
            raise KeyError(f"Image {i} of {self.file} was unreadable when packed (see 'missing' in its JSON)")
        if self._map is None:  # a private copy-on-write map: writable for frombuffer, never written
            with open(self.file, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        data = torch.frombuffer(self._map, dtype=torch.uint8, count=end - start, offset=start)
        return decode_jpeg(data, mode=ImageReadMode.RGB)


def _as_targets(targets, count: int):
    """``None``, one tensor, or a dict of tensors, each with ``count`` rows."""
    if targets is None:
        return None
    if isinstance(targets, dict):
        return {name: _as_targets(values, count) for name, values in targets.items()}
    targets = torch.as_tensor(np.asarray(targets))
    if len(targets) != count:
        raise ValueError(f"{len(targets)} targets for a pack of {count} images.")
    return targets


class PackedDataset(Dataset):
    """``(uint8 image, target)`` pairs from a pack, like ``FaceDataset`` without the transform.

    ``targets``: one tensor/array (one row per packed path) -> that row; a dict of them -> a dict; ``None`` ->
    the row's position in the packed list. Images recorded as missing are left out; ``rows`` holds the
    positions kept, in order.
    """

    def __init__(self, pack_file: str | Path, targets=None, paths: Sequence[str | os.PathLike] | None = None):
        self.images = PackedImages(pack_file, paths)
        self.targets = _as_targets(targets, len(self.images))
        self.rows = np.setdiff1d(np.arange(len(self.images)), self.images.missing)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        row = int(self.rows[index])
        if self.targets is None:
            target = torch.tensor(row)
        elif isinstance(self.targets, dict):
            target = {name: values[row] for name, values in self.targets.items()}
        else:
            target = self.targets[row]
        return self.images[row], target


class SeededBatches(Sampler):
    """The batches of ``sampler`` (``batch_size`` and ``drop_last`` as in a DataLoader), each a list of
    ``(index, seed)`` pairs that share one seed drawn from ``generator`` when the epoch starts: a batch's
    augmentation then depends on the seeded generator only, not on which worker makes it or how many there are."""

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool, generator: torch.Generator):
        self.batches = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size, self.drop_last, self.generator = batch_size, drop_last, generator

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        seeds = torch.randint(2**62, (len(self),), generator=self.generator).tolist()
        for seed, batch in zip(seeds, self.batches):
            yield [(index, seed) for index in batch]


@functools.cache
def keep_freed_memory(pid: int) -> bool:
    """Ask glibc's malloc (once per process ``pid``) to keep freed blocks of up to 32 MB for reuse instead of
    handing them back to the kernel: otherwise every batch's float temporaries are mapped and page-faulted in
    afresh, which took ~30% of a CPU worker's time at 224 px (1.9 instead of 2.7 ms per image). The process
    then holds on to its peak working set. False where the C library is not glibc (nothing changes)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30))


class AugmentedBatches(Dataset):
    """A ``PackedDataset`` read a batch at a time on the CPU, for a CPU training device: ``__getitems__`` (which
    a DataLoader calls with each list of ``SeededBatches``, in a worker when there are workers) decodes the
    batch channels-last and runs ``augment`` on it, seeded by the batch's seed and its first index (so each
    process of a data-parallel run, holding its own part of a batch, draws its own augmentations)."""

    def __init__(self, dataset: PackedDataset, augment: BatchAugment):
        self.dataset, self.augment = dataset, augment

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, items: list[tuple[int, int]]):
        keep_freed_memory(os.getpid())
        samples = [self.dataset[index] for index, _ in items]
        images = torch.stack([image.permute(1, 2, 0) for image, _ in samples]).permute(0, 3, 1, 2)
        targets = default_collate([target for _, target in samples])
        state = np.random.SeedSequence([items[0][1], items[0][0]]).generate_state(2, np.uint32)
        self.augment.seed(int(state[0]) << 31 | int(state[1]) >> 1)
        out = None
        if get_worker_info() is not None:  # write straight into the shared memory the batch travels in
            size = self.augment.image_size
            shape = (len(items), 3, size, size)
            out = torch.empty(0).set_(torch.UntypedStorage._new_shared(math.prod(shape) * 4), 0, shape)
        if self.augment.mixers:
            return self.augment(images, targets, out=out)
        return self.augment(images, out=out), targets


def _as_is(batch):
    """The collate function of ``AugmentedBatches``: its batches come whole."""
    return batch


class DeviceLoader:
    """Wraps a DataLoader of ``(uint8 images, targets)``: each batch goes to ``device`` (non-blocking; build
    the DataLoader with ``pin_memory=True`` on CUDA) and through ``augment`` there, giving ``(float images,
    targets)`` (soft labels when ``augment`` mixes). Without ``augment`` the batch is yielded as it comes (an
    ``AugmentedBatches`` loader's batches are augmented already).
    ``seed(s)`` restarts the loader's shuffling and the augmentation (at ``s + seed_offset``: each process of
    a data-parallel run draws its own augmentations while all shuffle alike), so an epoch depends only on ``s``.
    """

    def __init__(self, loader: DataLoader, device: str | torch.device, augment: BatchAugment | None = None,
                 seed_offset: int = 0):
        self.loader, self.device, self.augment = loader, torch.device(device), augment
        self.seed_offset = seed_offset

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def dataset(self) -> Dataset:
        """The dataset of ``(uint8 image, target)`` pairs (a ``PackedDataset``)."""
        inner = self.loader.dataset
        return inner.dataset if isinstance(inner, AugmentedBatches) else inner

    @property
    def batch_size(self) -> int | None:
        return loader_batch_size(self.loader)

    def seed(self, seed: int) -> None:
        """Seed the shuffling generator(s) of the loader, its sampler and its batch sampler (also inside an
        ``accelerate`` shard), and the augmentation."""
        seed_loader_generators(self.loader, seed)
        if self.augment is not None:
            self.augment.seed(seed + self.seed_offset)

    def __iter__(self) -> Iterator:
        for images, targets in self.loader:
            images, targets = images.to(self.device, non_blocking=True), to_device(targets, self.device)
            if self.augment is None:
                yield images, targets
            elif self.augment.mixers:
                yield self.augment(images, targets)
            else:
                yield self.augment(images), targets


def make_device_loader(dataset: PackedDataset, batch_size: int, device: str | torch.device,
                       augment: BatchAugment, shuffle: bool, num_workers: int = 0, drop_last: bool = False,
                       seed: int = 0) -> DeviceLoader:
    """A seeded loader of augmented float batches on ``device``. On CUDA the workers decode uint8 batches
    (pinned) and ``augment`` runs on the GPU; on a CPU device the workers decode and augment whole batches
    (``AugmentedBatches``), so augmentation runs on as many cores as there are workers."""
    generator = torch.Generator().manual_seed(seed)
    common = {"num_workers": num_workers, "persistent_workers": num_workers > 0}
    if torch.device(device).type == "cpu":
        sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        # the DataLoader draws its workers' base seed from its own generator, leaving the shuffle's alone
        loader = DataLoader(AugmentedBatches(dataset, augment), collate_fn=_as_is, generator=torch.Generator(),
                            batch_sampler=SeededBatches(sampler, batch_size, drop_last, generator), **common)
        return DeviceLoader(loader, device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator,
                        pin_memory=torch.device(device).type == "cuda", **common)
    return DeviceLoader(loader, device, augment)
