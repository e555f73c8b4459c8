"""Multi-task face attribute models: gender, race and age heads on any backbone, and the seed's baseline CNN.

The seed (a FairFace capstone) shares a trunk of four convolution blocks (Conv, BatchNorm, ReLU, max-pool)
between task heads: a shared fully connected layer with dropout, then one head per task. ``MultiTaskModel``
keeps that shape over any backbone that returns pooled features and has ``num_features`` (``BaselineCNN``,
or one from ``helpers.models.backbones.create_backbone``) and returns a dict of outputs:

- ``gender``: (B, 2) logits (softmax + cross-entropy, the same model as the seed's sigmoid + BCE);
- ``race``: (B, num_races) logits;
- ``age``: (B,) years (``age_mode="regression"``, the output range-normalised as ``low + (high - low) * z``)
  or (B, 9) logits over FairFace's age bins (``age_mode="classification"``).
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import torch
from torch import nn

from helpers.models.backbones import create_backbone
from helpers.models.heads import LinearHead

AGE_MODES = ("regression", "classification")
NUM_AGE_BINS = 9  # FairFace's age bins


def conv_block(in_chans: int, out_chans: int) -> nn.Sequential:
    """Conv3x3 -> BatchNorm -> ReLU -> MaxPool2: one of the seed's four blocks."""
    return nn.Sequential(nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False), nn.BatchNorm2d(out_chans),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class BaselineCNN(nn.Module):
    """The seed's shared trunk: four conv blocks with widening filters, the last map flattened.

    The seed flattened its last feature map into the shared layer; an adaptive average pool to ``pool x pool``
    first keeps that size whatever the input size. Widths 32-64-128-256 are this project's choice (the
    seed gives only "progressively increasing" filters).
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), pool: int = 4, in_chans: int = 3):
        super().__init__()
        chans = [in_chans, *widths]
        self.blocks = nn.Sequential(*(conv_block(a, b) for a, b in pairwise(chans)))
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.num_features = widths[-1] * pool * pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(x)).flatten(1)


class MultiTaskModel(nn.Module):
    """Backbone -> shared Linear/ReLU/Dropout layer(s) -> gender, race and age heads; ``forward`` returns a dict.

    ``hidden`` is one width or several (``(1024, 512)``: two shared layers); ``num_races=None`` leaves the race
    head out (Adience: gender and ``num_age_bins`` age groups). Parameter names start with ``backbone.``,
    ``shared.`` and ``heads.`` (for ``TrainConfig.param_groups``).
    """

    def __init__(self, backbone: nn.Module, num_races: int | None, age_mode: str = "regression",
                 hidden: int | Sequence[int] = 256, dropout: float = 0.3,
                 age_range: tuple[float, float] = (0.0, 100.0), num_genders: int = 2,
                 num_age_bins: int = NUM_AGE_BINS):
        super().__init__()
        if age_mode not in AGE_MODES:
            raise ValueError(f"age_mode={age_mode!r}; choose one of {AGE_MODES}.")
        if not hasattr(backbone, "num_features"):
            raise TypeError(f"{type(backbone).__name__} has no num_features; pass a backbone returning "
                            "pooled features (BaselineCNN or helpers.models.backbones.create_backbone).")
        self.age_mode = age_mode
        self.backbone = backbone
        layers, width = [], backbone.num_features
        for out in [hidden] if isinstance(hidden, int) else hidden:
            layers += [nn.Linear(width, out), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = out
        self.shared = nn.Sequential(*layers)
        outputs = {"gender": num_genders, "race": num_races, "age": 1 if age_mode == "regression" else num_age_bins}
        self.heads = nn.ModuleDict({task: LinearHead(width, n) for task, n in outputs.items() if n is not None})
        self.register_buffer("age_range", torch.tensor(age_range, dtype=torch.float32), persistent=False)

    @torch.no_grad()
    def init_age_bias(self, prior: float | Sequence[float]) -> None:
        """Start the age head at the training data instead of at 0 years: ``prior`` is the median age in years
        (regression) or the frequency of each age bin (classification, bias = log frequency)."""
        bias = self.heads["age"].fc.bias
        if self.age_mode == "regression":
            low, high = self.age_range.tolist()
            bias.fill_((float(prior) - low) / (high - low))
        else:
            bias.copy_(torch.as_tensor(prior, dtype=bias.dtype).clamp_min(1e-3).log())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.shared(self.backbone(x))
        out = {task: head(features) for task, head in self.heads.items()}
        if self.age_mode == "regression":
            low, high = self.age_range
            out["age"] = low + (high - low) * out["age"].squeeze(1)
        return out


def create(backbone: str = "baseline", num_races: int = 7, age_mode: str = "regression",
           pretrained: bool = False, weights_file: str | Path | None = None, hidden: int = 256,
           dropout: float = 0.3, age_range: tuple[float, float] = (0.0, 100.0)) -> MultiTaskModel:
    """A ``MultiTaskModel`` on the seed's ``BaselineCNN`` (``backbone="baseline"``) or on any name that
    ``helpers.models.backbones.create_backbone`` knows (e.g. ``"resnet34"``, the FairFace paper's network)."""
    if backbone == "baseline":
        trunk = BaselineCNN()
    else:
        trunk, _ = create_backbone(backbone, pretrained=pretrained, weights_file=weights_file)
    return MultiTaskModel(trunk, num_races, age_mode, hidden, dropout, age_range)
