"""Data-parallel training through Hugging Face ``accelerate``, and the single-process case behind the same face.

``engine.fit`` asks :func:`context` for the processes it runs in: one process (the usual case) gets
:class:`Single`, whose methods do nothing; under ``accelerate launch``, ``notebook_launcher`` (Kaggle's 2x T4)
or ``debug_launcher`` (CPU processes with gloo, for tests) it gets :class:`Parallel`, which wraps the model in
DistributedDataParallel, splits every batch across the processes (``split_batches``: ``BATCH_SIZE`` stays the
global batch, so the schedule and the results do not depend on the device count), gathers evaluation outputs
without the duplicates that pad the last batch (``gather_for_metrics``), and lets only the main process write.
Nothing here touches CUDA before the launch: the ``Accelerator`` is created inside each process.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from helpers import config


def world_size() -> int:
    """How many processes this run has (``WORLD_SIZE``, set by every accelerate launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class Single:
    """One process: everything passes through unchanged and this process writes."""

    rank, is_main = 0, True

    def __init__(self, device: str | None = None):
        self.device = torch.device(device) if device else config.device()

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return model

    def loader(self, loader):
        return loader

    def gather(self, outputs, targets):
        return outputs, targets

    def reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def wait(self) -> None:
        """Nothing to wait for."""


class Parallel(Single):
    """Several processes of one ``accelerate`` launch (see the module docstring)."""

    def __init__(self, device: str | None = None):
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration

        cpu = device == "cpu" or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("yes", "true", "1")
        self.accelerator = Accelerator(cpu=cpu, mixed_precision="no",
                                       dataloader_config=DataLoaderConfiguration(split_batches=True))
        self.device = self.accelerator.device
        self.rank, self.is_main = self.accelerator.process_index, self.accelerator.is_main_process

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return self.accelerator.prepare_model(model)

    def loader(self, loader):
        """The loader sharded for this process (each process takes its part of every batch); a GPU-path
        ``DeviceLoader`` keeps its on-device augmentation, seeded per process (on a CPU device its workers
        augment each process's part of a batch under a seed of their own)."""
        from helpers.packed import DeviceLoader

        if isinstance(loader, DeviceLoader):
            inner = self.accelerator.prepare_data_loader(loader.loader, device_placement=False)
            return DeviceLoader(inner, self.device, loader.augment, seed_offset=self.rank)
        return loader if loader is None else self.accelerator.prepare_data_loader(loader)

    def gather(self, outputs, targets):
        return self.accelerator.gather_for_metrics((outputs, targets))

    def reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor, reduction="sum")

    def wait(self) -> None:
        self.accelerator.wait_for_everyone()


def context(device: str | None = None) -> Single:
    """:class:`Parallel` inside a multi-process launch, else :class:`Single`."""
    return Parallel(device) if world_size() > 1 else Single(device)


def launch(function: Callable, args: tuple = (), devices: int | None = None) -> None:
    """Run ``function(*args)`` once per device: directly for one device (None: one), else with
    ``accelerate.notebook_launcher`` (from a notebook; forks, so nothing may have touched CUDA before)."""
    if not devices or devices <= 1:
        function(*args)
        return
    if torch.cuda.is_initialized():
        raise RuntimeError("CUDA was initialised before the launch; restart the kernel and set DEVICES before "
                           "running any cell that uses the GPU.")
    from accelerate import notebook_launcher

    notebook_launcher(function, args, num_processes=devices)
