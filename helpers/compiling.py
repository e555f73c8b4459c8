"""When ``torch.compile`` pays back: ``TrainConfig.compile`` is True, False or ``"auto"``.

``"auto"`` compiles the training forward only on a CUDA GPU that Triton supports (compute capability 7.0 or
more: Kaggle's P100 has 6.0) and only for a run long enough to earn the compile time back twice over. The
break-even comes from ``bench/bench.py --compile`` on an H100 (``bench/results/h100_session2.json``): our
ConvNeXt-T at 224 px, batch 128, bf16 compiled in 43 s, then trained at 2,256 instead of 1,974 img/s, so the
compile time is back after ``43 / (1/1974 - 1/2256)`` = ~680,000 images (4.9 of notebook 03's 140,000-image
epochs). A slower GPU spends more time per image, so at the same relative gain it is back sooner. On CPU
``"auto"`` never compiles: there ConvNeXt-T trained 4x slower compiled (``bench/results/cpu_2core_compile.json``).
"""
from __future__ import annotations

import importlib.util

import torch

COMPILE_MODES = (True, False, "auto")
MIN_CAPABILITY = (7, 0)  # Triton's oldest GPU generation (Volta)
BREAK_EVEN_IMAGES = 680_000  # measured on an H100 (module docstring)
MARGIN = 2  # "auto" compiles runs of at least MARGIN x the break-even


def is_compile_mode(setting) -> bool:
    """True, False or "auto" (not 1 or "yes")."""
    return isinstance(setting, bool) or setting == "auto"


def resolve_compile(setting: bool | str, device: torch.device, images: int | None) -> tuple[bool, str]:
    """Whether to compile a run (or what is left of a resumed one) of ``images`` training images per process on
    ``device`` (None: unknown), and why, in words. ``True`` on a GPU Triton cannot compile for is an error that
    names the fix."""
    if not is_compile_mode(setting):
        raise ValueError(f"compile={setting!r}; choose one of {COMPILE_MODES}.")
    if setting is False:
        return False, "set explicitly"
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    too_old = capability is not None and capability < MIN_CAPABILITY
    if setting is True and too_old:
        raise ValueError(f"torch.compile needs a GPU of compute capability {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} "
                         f"or more (Triton); this one has {capability[0]}.{capability[1]}. Set compile=False "
                         "(COMPILE = False in the notebook).")
    if setting is True:
        return True, "set explicitly"
    needed = MARGIN * BREAK_EVEN_IMAGES
    if device.type != "cuda":
        return False, f"auto: off on {device.type}, it pays on CUDA GPUs only"
    if too_old:
        return False, f"auto: off, compute capability {capability[0]}.{capability[1]} is below Triton's 7.0"
    if importlib.util.find_spec("triton") is None:
        return False, "auto: off, Triton is not installed"
    if images is None:
        return False, "auto: off, the run's length is unknown (a loader without batch_size)"
    if images < needed:
        return False, f"auto: off, {images:,} images per process is under the {needed:,} that pay it back twice"
    return True, f"auto: on, {images:,} images per process pay back the compile time (>= {needed:,})"
