"""One entry point from a dataset name to its folder and its ``FaceSet``, for either profile.

The demo profile writes the synthetic twin on first use; the full profile reads the real folder under
``config.data_root()`` and raises a ``LayoutError`` (expected tree + how to get it) when it is missing.
Nothing ever switches silently from one to the other.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
from torch.utils.data import DataLoader

from helpers import config, datasets, demo, kaggle_io, transforms
from helpers.datasets import FaceDataset, FaceSet, make_loader

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
    """Get dataset ``name``: the demo twin offline, or the real data through the Kaggle CLI (skipped if present)."""
    return demo.ensure(name) if config.profile().demo else kaggle_io.fetch(name)


def download_all(names: Iterable[str]) -> pd.DataFrame:
    """``download`` each dataset; one that cannot be had is reported (with how to get it), not fatal."""
    rows = []
    for name in names:
        try:
            rows.append({"dataset": name, "status": "ready", "folder": str(download(name))})
        except (FileNotFoundError, kaggle_io.MissingCredentialsError, kaggle_io.KaggleCLIError) as err:
            print(f"--- {name}: not available ---\n{err}\n")
            rows.append({"dataset": name, "status": "missing", "folder": None})
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


def overview(readers: Iterable[str]) -> pd.DataFrame:
    """Images, classes and dropped records per reader and split: the layout check of notebook 00."""
    rows = []
    for reader in readers:
        faceset = load(reader)
        dropped = sum(faceset.dropped.values())
        for split, frame in faceset.splits.items():
            rows.append({"reader": reader, "split": split, "images": len(frame),
                         "classes": len(faceset.classes) if faceset.classes else None,
                         "dropped while reading": dropped, "root": str(faceset.root)})
    return pd.DataFrame(rows)


def make_loaders(splits: dict[str, pd.DataFrame], augment: str, image_size: int, batch_size: int,
                 target: str | list[str] | None = "label", train_split: str = "train",
                 collate_fn: Callable | None = None) -> dict[str, DataLoader]:
    """A loader per split: ``train_split`` shuffled with the ``augment`` train transform (and ``collate_fn``,
    e.g. MixUp/CutMix), every other split in order with the eval transform. Splits without the ``target``
    column (a Kaggle test set) yield row positions instead, for writing predictions back."""
    loaders = {}
    for split, frame in splits.items():
        train = split == train_split
        labelled = target is None or all(c in frame for c in ([target] if isinstance(target, str) else target))
        dataset = FaceDataset(frame, transforms.build(augment, image_size, train=train),
                              target=target if labelled else None)
        loaders[split] = make_loader(dataset, batch_size, shuffle=train, drop_last=train and len(dataset) > batch_size,
                                     collate_fn=collate_fn if train else None)
    return loaders
