"""A backbone, an embedding head and ArcFace's class centres in one module (notebook 07)."""
from __future__ import annotations

import torch
from torch import nn

from helpers.losses import ArcFace


class ArcFaceModel(nn.Module):
    """A backbone, an embedding head and ArcFace's class centres, trained by
    ``engine.fit(model, ..., loss_fn=model.loss)``.

    ``forward`` returns ``cos(theta)`` to every class centre (B, num_classes), so the engine's accuracy is
    the nearest-centre accuracy and the centres are saved in the model's checkpoint. ``model.embedder``
    (backbone then head, sharing their weights) gives the embeddings for verification. Parameter names
    start with ``backbone.``, ``head.`` and ``arcface.``, as in ``backbones.FaceClassifier``, so the same
    ``param_groups`` prefixes work for both.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, arcface: ArcFace):
        super().__init__()
        self.backbone, self.head, self.arcface = backbone, head, arcface

    @property
    def embedder(self) -> nn.Sequential:
        return nn.Sequential(self.backbone, self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.arcface.cosine(self.head(self.backbone(x)))

    def loss(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """ArcFace loss on this model's outputs (a method, so the engine does not register the centres twice)."""
        return self.arcface.loss_from_cosine(cosine, labels)
