"""Grad-CAM panels (Selvaraju et al. 2017, with the ``grad-cam`` package) for classifiers in the results registry:
where in the face a model looked for the class it predicted.

:func:`load_classifier` rebuilds a registry entry's model from the settings recorded with it (model name, head,
dropout, extra model arguments; the number of classes read from the checkpoint) and loads ``<run_dir>/best.pt``;
a run folder that no longer exists is a :class:`RunMissingError` saying so. :func:`target_layer` takes the
backbone's last feature map with a spatial extent (found with one forward pass) or, for a ViT, the last block's
first norm with its patch tokens put back on their grid.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from torch import nn

from helpers import data, plots, transforms
from helpers.checkpoint import load_checkpoint, model_weights
from helpers.imageio import load_rgb
from helpers.models import backbones

NOTEBOOKS = ("03_convnext_from_scratch", "04_resnet50", "05_mobilenetv2", "06_inception_resnet_v1",
             "10_adience_transfer")  # whose registry entries point at a backbones.FaceClassifier checkpoint
EVAL_SPLITS = ("dev", "val", "valid")  # preferred sample splits when an entry names none


class RunMissingError(FileNotFoundError):
    """A registry entry whose run folder (or its ``best.pt``) is gone."""


def checkpoint_path(entry: Mapping) -> Path:
    """``<run_dir>/best.pt`` of an entry, or a :class:`RunMissingError` explaining why it is not there."""
    run_dir = entry.get("run_dir")
    path = Path(run_dir) / "best.pt" if run_dir else None
    if path is None or not path.is_file():
        where = f"{path} no longer exists" if path else "it recorded no run folder"
        raise RunMissingError(f"{entry['notebook']} ({entry['model']}, recorded {entry.get('time')}): {where}. The "
                              "run folder was moved or deleted, or lived in another session (Colab without DRIVE): "
                              "rerun that notebook, or copy its run folder back, to see this panel.")
    return path


def load_classifier(entry: Mapping) -> backbones.FaceClassifier:
    """The model of a registry entry with its best weights, in eval mode (no pretrained download)."""
    weights = model_weights(load_checkpoint(checkpoint_path(entry)))
    settings = entry.get("settings") or {}
    head = settings.get("head", "linear")
    extra = {k: settings[k] for k in ("drop_path_rate", "norm") if k in settings}
    model = backbones.create_model(settings.get("model", entry["model"]), weights["head.fc.weight"].shape[0],
                                   head=list(head) if isinstance(head, (list, tuple)) else head,
                                   dropout=settings.get("dropout", 0.0), **extra, **settings.get("model_kwargs", {}))
    model.load_state_dict(weights)
    return model.eval()


def _vit_grid(backbone: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    prefix = getattr(backbone, "num_prefix_tokens", 1)

    def to_grid(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, prefix:]
        side = round(patches.shape[1] ** 0.5)
        return patches.reshape(len(tokens), side, side, -1).permute(0, 3, 1, 2)
    return to_grid


def target_layer(model: backbones.FaceClassifier, image_size: int) -> tuple[nn.Module, Callable | None]:
    """The layer Grad-CAM reads and the reshape its output needs (None for a feature map)."""
    backbone = model.backbone
    if hasattr(backbone, "patch_embed") and hasattr(backbone, "blocks"):
        return backbone.blocks[-1].norm1, _vit_grid(backbone)
    finished: list[tuple[nn.Module, torch.Size]] = []

    def note(module: nn.Module, _, output) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == 4:
            finished.append((module, output.shape))
    hooks = [module.register_forward_hook(note) for module in backbone.modules()]
    try:
        with torch.no_grad():
            backbone.eval()(torch.zeros(1, 3, image_size, image_size))
    finally:
        for hook in hooks:
            hook.remove()
    spatial = [module for module, shape in finished if min(shape[-2:]) > 1]
    return (spatial or [module for module, _ in finished])[-1], None


def heatmaps(model: backbones.FaceClassifier, images: torch.Tensor) -> np.ndarray:
    """Grad-CAM maps ``(N, H, W)`` in [0, 1] of normalised ``images`` for each image's predicted class."""
    layer, reshape = target_layer(model, images.shape[-1])
    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        return cam(input_tensor=images, targets=None)


def sample(entry: Mapping, n: int) -> tuple[pd.DataFrame, list[str], str]:
    """``n`` evenly spaced images of the entry's dataset (its ``eval_split``, else a dev/val split, else the
    first), with the class names and the label column."""
    settings = entry.get("settings") or {}
    faceset = data.load(settings["dataset"])
    names = [s for s in (settings.get("eval_split"), *EVAL_SPLITS) if s in faceset.splits] or list(faceset.splits)
    frame = faceset[names[0]]
    rows = frame.iloc[np.linspace(0, len(frame) - 1, min(n, len(frame))).round().astype(int)]
    return rows, list(settings.get("class_names") or faceset.classes), settings.get("target", "label")


def panel(entry: Mapping, n: int = 4) -> Figure:
    """``n`` faces of the entry's dataset with their true class, over the Grad-CAM map of the class its best
    model predicts (and its probability)."""
    model = load_classifier(entry)
    rows, classes, target = sample(entry, n)
    norm, size = model.info.norm, int(entry["settings"]["image_size"])
    transform = transforms.build("none", size, train=False, norm=norm)
    images = torch.stack([transform(load_rgb(path)) for path in rows["path"]])
    with torch.no_grad():
        probs = torch.softmax(model(images), 1)
    rgb = transforms.denormalize(images, norm).permute(0, 2, 3, 1).numpy()
    overlays = [show_cam_on_image(image, cam, use_rgb=True) for image, cam in zip(rgb, heatmaps(model, images),
                                                                                   strict=True)]
    truth = [f"true {classes[int(label)]}" for label in rows[target]] if target in rows else ["" for _ in rows]
    guess = [f"pred {classes[int(k)]} ({100 * float(p):.0f}%)" for p, k in zip(*probs.max(1), strict=True)]
    fig = plots.image_grid([*rgb, *overlays], [*truth, *guess], ncols=len(rows))
    fig.suptitle(f"{entry['notebook']} · {entry['model']}")
    return fig


def panels(entries: Mapping[str, Mapping], n: int = 4) -> dict[str, Figure]:
    """:func:`panel` of each entry (keyed by notebook); an entry whose run folder or data is missing, or whose
    weights no longer fit its recorded settings, is skipped with a message saying why."""
    figures = {}
    for notebook, entry in entries.items():
        try:
            figures[notebook] = panel(entry, n)
        except (FileNotFoundError, RuntimeError, KeyError) as err:
            print(f"{notebook}: no Grad-CAM panel. {err}")
    return figures
