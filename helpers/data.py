"""One entry point from a dataset name to its folder and its ``FaceSet``, and the one place loaders are built.

The demo profile writes the synthetic twin on first use; the full profile finds the real folder (attached
Kaggle inputs first, then ``config.data_root()``) and raises a ``LayoutError`` (expected tree + how to get it)
when it is missing. Nothing ever switches silently from one to the other.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd
import torch

from helpers import config, datasets, demo, gpu_augment, kaggle_io, packed, transforms
from helpers.datasets import FaceDataset, FaceSet, make_loader
from helpers.datasets.base import target_tensors

log = logging.getLogger(__name__)

# reader name -> (dataset folder name, reader)
READERS: dict[str, tuple[str, Callable[[Path], FaceSet]]] = {
    "hw2p2": ("hw2p2", datasets.hw2p2.read_classification),
    "hw2p2_verification": ("hw2p2", datasets.hw2p2.read_verification),
    "hw2p2_pairs": ("hw2p2", datasets.hw2p2.read_pairs),
    "cs405": ("cs405", datasets.cs405.read),
    "fairface": ("fairface", datasets.fairface.read),
    "adience": ("adience", datasets.adience.read),
    "celeba": ("celeba", datasets.celeba.read),
    "facecom_a": ("facecom", datasets.facecom.read_task_a),
    "facecom_b": ("facecom", datasets.facecom.read_task_b),
    "utkface": ("utkface", datasets.utkface.read),
}


def dataset_dir(name: str) -> Path:
    """The folder of dataset ``name``: the demo twin (written if absent) or the real folder (must exist)."""
    return demo.ensure(name) if config.profile().demo else datasets.locate(name)


def download(name: str) -> Path:
    """Get dataset ``name``: the demo twin offline; else an attached Kaggle input as it is, or the Kaggle CLI
    (a complete earlier download is kept; an interrupted one is an error saying so)."""
    if config.profile().demo:
        return demo.ensure(name)
    return datasets.find_input(name) or kaggle_io.fetch(name)


def _missing(name: str, err: Exception) -> dict:
    print(f"--- {name}: missing ---\n{err}\n")
    return {"dataset": name, "status": "missing", "folder": None, "how to get it": str(err).splitlines()[0]}


def download_all(names: Iterable[str]) -> pd.DataFrame:
    """``download`` each dataset; one that cannot be had is reported (with how to get it), not fatal."""
    rows = []
    for name in names:
        try:
            rows.append({"dataset": name, "status": "ready", "folder": str(download(name)), "how to get it": ""})
        except (FileNotFoundError, kaggle_io.MissingCredentialsError, kaggle_io.KaggleCLIError,
                kaggle_io.IncompleteDownloadError) as err:
            rows.append(_missing(name, err))
    return pd.DataFrame(rows)


def readers_of(names: Iterable[str]) -> list[str]:
    """The reader names (keys of ``READERS``) of the given datasets."""
    wanted = set(names)
    return [reader for reader, (name, _) in READERS.items() if name in wanted]


def load(reader: str, root: Path | None = None) -> FaceSet:
    """Read one layout (a key of ``READERS``) from ``root`` or the profile's dataset folder."""
    if reader not in READERS:
        raise KeyError(f"Unknown reader {reader!r}; known: {sorted(READERS)}.")
    name, read = READERS[reader]
    return read(root if root is not None else dataset_dir(name))


def available(reader: str) -> FaceSet | None:
    """``load(reader)``, or None after saying that the dataset is missing and how to get it (notebooks 00-01
    carry on with the datasets they have)."""
    try:
        return load(reader)
    except FileNotFoundError as err:
        print(f"--- {reader}: missing ---\n{err}\n")
        return None


def overview(readers: Iterable[str]) -> pd.DataFrame:
    """Images, classes and dropped records per reader and split: the layout check of notebook 00. A layout
    that is absent or broken gets one row saying so (and how to get it); the others are still read."""
    rows = []
    for reader in readers:
        try:
            faceset = load(reader)
        except (FileNotFoundError, ValueError) as err:
            rows.append({"reader": reader, "split": "-", "images": 0, "problem": str(err).splitlines()[0]})
            continue
        dropped = sum(faceset.dropped.values())
        for split, frame in faceset.splits.items():
            rows.append({"reader": reader, "split": split, "images": len(frame),
                         "classes": len(faceset.classes) if faceset.classes else None,
                         "dropped while reading": dropped, "root": str(faceset.root), "problem": ""})
    return pd.DataFrame(rows)


PIPELINES = ("cpu", "gpu")


def pipeline_for(pipeline: str | None) -> str:
    """``"gpu"`` (packed JPEGs decoded by CPU workers and augmented in batches: on the GPU, or by the workers
    on a CPU-only machine) or ``"cpu"`` (PIL + torchvision per image on CPU workers); None picks ``"gpu"``
    where CUDA is available (on CPU the network, not the loader, bounds a run)."""
    if pipeline is None:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if pipeline not in PIPELINES:
        raise ValueError(f"PIPELINE={pipeline!r}; choose one of {PIPELINES} or None (gpu where CUDA is available).")
    return pipeline


def _packed(frame: pd.DataFrame, image_size: int, batch_size: int, train: bool, augment: str,
            target: str | list[str] | None, norm: str, num_workers: int, seed: int,
            mixup: tuple[float, float], num_classes: int | None) -> packed.DeviceLoader:
    """The GPU input path: ``frame``'s images packed once under ``config.cache_dir()`` (a training split skips
    unreadable files, listed in the pack's JSON; any other split names them in an error), uint8 batches
    decoded by the workers and augmented on the training device."""
    paths = frame["path"].astype(str).tolist()
    name = f"{packed.paths_digest(paths)[:16]}_{image_size}.pack"
    pack_file = packed.pack(paths, config.cache_dir() / "packs" / name, image_size,
                            on_error="skip" if train else "raise")
    targets = None if target is None else target_tensors(frame, target)
    dataset = packed.PackedDataset(pack_file, targets, paths)
    if train and len(dataset) < len(frame):
        log.warning("Training without %d unreadable image(s) listed in %s.", len(frame) - len(dataset),
                    packed.meta_file(pack_file))
    dataset.frame = frame.iloc[dataset.rows]
    mean, std = transforms.NORMS[norm]
    augmenter = gpu_augment.BatchAugment(augment, image_size, mean, std, train, *mixup, num_classes=num_classes)
    return packed.make_device_loader(dataset, batch_size, config.device(), augmenter, shuffle=train,
                                     num_workers=num_workers, drop_last=train and len(dataset) > batch_size,
                                     seed=seed)


def loader(frame: pd.DataFrame, image_size: int, batch_size: int, train: bool, augment: str = "none",
           target: str | list[str] | None = "label", norm: str = "imagenet", num_workers: int | None = None,
           seed: int = 0, mixup: tuple[float, float] = (0.0, 0.0), num_classes: int | None = None,
           on_error: str = "raise", pipeline: str | None = "cpu"):
    """The one loader builder: ``train`` shuffles, augments (level ``augment``; MixUp/CutMix with the alphas
    of ``mixup`` and ``num_classes``), skips unreadable images with a summary and drops the last partial batch
    (for BatchNorm); otherwise images come in ``frame`` order with the eval transform and an unreadable one
    is an error (or, ``on_error="blank"``, a grey image for that row, reported). ``target=None`` yields row
    positions, to write predictions back. ``pipeline`` (:func:`pipeline_for`) picks the CPU or the GPU path;
    a ``"blank"`` loader (a Kaggle test set) always takes the CPU path."""
    workers = config.profile().num_workers if num_workers is None else num_workers
    if pipeline_for(pipeline) == "gpu" and on_error == "raise":
        return _packed(frame, image_size, batch_size, train, augment, target, norm, workers, seed, mixup,
                       num_classes)
    dataset = FaceDataset(frame, transforms.build(augment, image_size, train, norm), target=target, train=train,
                          **({} if train else {"on_error": on_error}))
    collate = transforms.mixup_cutmix(num_classes, *mixup) if train and any(mixup) else None
    return make_loader(dataset, batch_size, shuffle=train, num_workers=workers, seed=seed,
                       drop_last=train and len(dataset) > batch_size, collate_fn=collate)


def make_loaders(splits: Mapping[str, pd.DataFrame], augment: str, image_size: int, batch_size: int,
                 target: str | list[str] | None = "label", train_split: str = "train", norm: str = "imagenet",
                 num_workers: int | None = None, seed: int = 0, mixup: tuple[float, float] = (0.0, 0.0),
                 num_classes: int | None = None, pipeline: str | None = "cpu") -> dict:
    """A :func:`loader` per split: ``train_split`` for training, the others for evaluation. Splits without
    the ``target`` column (a Kaggle test set) yield row positions, and an unreadable image there becomes a
    grey image for its own row (reported) so that every test row keeps a prediction."""
    loaders = {}
    for split, frame in splits.items():
        columns = [] if target is None else [target] if isinstance(target, str) else list(target)
        labelled = all(c in frame for c in columns)
        loaders[split] = loader(frame, image_size, batch_size, split == train_split, augment,
                                target if labelled else None, norm, num_workers, seed, mixup, num_classes,
                                on_error="raise" if labelled else "blank", pipeline=pipeline)
    return loaders
