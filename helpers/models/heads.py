"""Classification heads that sit on pooled backbone features of shape (B, in_features)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LinearHead(nn.Module):
    """Dropout -> Linear: the usual transfer-learning head (the seed's "dropout 0.5" before the softmax)."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))


class MLPHead(nn.Module):
    """Hidden Linear layers, each followed by LeakyReLU and Dropout, then the classifier Linear.

    ``MLPHead(512, 7000, hidden=[1024, 512], dropout=0.5)`` is the CS 405 InceptionResnetV1 head:
    512 -> 1024 -> 512 -> 7000 with LeakyReLU + Dropout(0.5) after each hidden layer.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int], dropout: float = 0.0,
                 negative_slope: float = 0.01):
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.LeakyReLU(negative_slope), nn.Dropout(dropout)]
            in_features = width
        self.hidden = nn.Sequential(*layers)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.hidden(x))


class EmbeddingHead(nn.Module):
    """BatchNorm -> Dropout -> Linear -> BatchNorm -> L2 norm: a face embedding (512-d by default).

    insightface's ``arcface_torch`` feature layer (BN, dropout, FC, BN), here on pooled features of any
    backbone: ``nn.Sequential(backbone, EmbeddingHead(backbone.num_features))``. The output lies on the unit
    sphere (``normalize=False`` keeps the raw vector).
    """

    def __init__(self, in_features: int, dim: int = 512, dropout: float = 0.0, normalize: bool = True):
        super().__init__()
        self.num_features = dim
        self.norm_in = nn.BatchNorm1d(in_features)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, dim, bias=False)
        self.norm_out = nn.BatchNorm1d(dim)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_out(self.fc(self.dropout(self.norm_in(x))))
        return nn.functional.normalize(x, dim=1) if self.normalize else x
