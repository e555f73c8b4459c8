"""One backbone, two heads: gender classification and ArcFace face verification (notebook 09, the seed's model).

Gender head: Linear -> BatchNorm -> ReLU -> Dropout -> Linear to 2 logits. Verification head: the same MLP to an
embedding (512-d), L2-normalised. ArcFace's class centres (one per training identity) live in the model, so each
training stage gives them their own rate through their prefix. Parameter names start with ``backbone.``,
``gender_head.``, ``verification_head.`` and ``arcface.`` (for ``TrainConfig.param_groups`` and
``Stage.trainable``).

``forward`` takes a batch of images (every head on every image, for evaluation) or a dict of per-task batches
``{"gender": images, "identity": images}`` (one backbone pass over both, each head on its own task's images, for
joint training). It returns a dict: ``gender`` logits, ``embedding`` (unit vectors) and ``cosine`` to the class
centres, for the tasks present.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from helpers.losses import ArcFace
from helpers.models.backbones import ModelInfo, create_backbone

TASKS = ("gender", "identity")
NUM_GENDERS = 2


def mlp_head(in_features: int, out_features: int, hidden: int, dropout: float) -> nn.Sequential:
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear: the seed's head."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, out_features))


class EmbeddingMLP(nn.Sequential):
    """:func:`mlp_head` whose output is L2-normalised: a face embedding on the unit sphere."""

    def __init__(self, in_features: int, dim: int, hidden: int, dropout: float):
        super().__init__(*mlp_head(in_features, dim, hidden, dropout))
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(super().forward(x), dim=1)


class DualHeadModel(nn.Module):
    """A backbone with a gender head, a verification (embedding) head and ArcFace's class centres."""

    def __init__(self, backbone: nn.Module, gender_head: nn.Module, verification_head: nn.Module, arcface: ArcFace,
                 info: ModelInfo):
        super().__init__()
        self.backbone, self.gender_head, self.verification_head = backbone, gender_head, verification_head
        self.arcface, self.info = arcface, info

    @property
    def embedder(self) -> nn.Sequential:
        """Images -> unit embeddings (backbone then verification head, sharing their weights)."""
        return nn.Sequential(self.backbone, self.verification_head)

    def _identity(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = self.verification_head(features)
        return {"embedding": embedding, "cosine": self.arcface.cosine(embedding)}

    def forward(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not isinstance(x, Mapping):
            features = self.backbone(x)
            return {"gender": self.gender_head(features), **self._identity(features)}
        if unknown := sorted(set(x) - set(TASKS)):
            raise KeyError(f"DualHeadModel: unknown task(s) {unknown} in the inputs; tasks are {TASKS}.")
        tasks = [task for task in TASKS if task in x]
        parts = self.backbone(torch.cat([x[task] for task in tasks])).split([len(x[task]) for task in tasks])
        features = dict(zip(tasks, parts, strict=True))
        out = {"gender": self.gender_head(features["gender"])} if "gender" in features else {}
        return {**out, **(self._identity(features["identity"]) if "identity" in features else {})}


class DualHeadLoss:
    """``sum(weights[task] * loss[task])`` over the tasks of a stage: ``gender`` cross-entropy (label smoothing,
    optional class weights against imbalance) on ``targets["gender"]``, ``identity`` the ArcFace loss of the
    model's cosines on ``targets["identity"]`` (training-identity indices).

    Not an ``nn.Module``: the centres are the model's, so the engine trains them once. A task whose target is
    present but empty adds 0 (the end of an evaluation zip); a weighted task whose target is absent is an error
    in training and NaN in evaluation (e.g. no ArcFace loss exists for people unseen in training).
    """

    def __init__(self, arcface: ArcFace, weights: Mapping[str, float], class_weights: torch.Tensor | None = None,
                 label_smoothing: float = 0.0):
        if unknown := sorted(set(weights) - set(TASKS)):
            raise ValueError(f"DualHeadLoss: unknown task(s) {unknown}; tasks are {TASKS}.")
        self.arcface, self.weights = arcface, {task: float(w) for task, w in weights.items() if w}
        self.class_weights, self.label_smoothing = class_weights, label_smoothing

    def __repr__(self) -> str:
        return f"DualHeadLoss(weights={self.weights}, label_smoothing={self.label_smoothing})"

    def _gender(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        return F.cross_entropy(logits.float(), labels.long(), weight=weight, label_smoothing=self.label_smoothing)

    def components(self, outputs: Mapping, targets: Mapping) -> dict[str, torch.Tensor]:
        """The unweighted loss of each weighted task whose target is present."""
        device = next(iter(outputs.values())).device
        parts = {}
        for task in (t for t in self.weights if t in targets):
            if len(targets[task]) == 0:
                parts[task] = torch.zeros((), device=device)
            elif task == "gender":
                parts[task] = self._gender(outputs["gender"], targets["gender"])
            else:
                parts[task] = self.arcface.loss_from_cosine(outputs["cosine"], targets["identity"])
        return parts

    def __call__(self, outputs: Mapping, targets: Mapping) -> torch.Tensor:
        parts = self.components(outputs, targets)
        if missing := [task for task in self.weights if task not in parts]:
            if torch.is_grad_enabled():
                raise KeyError(f"DualHeadLoss: the batch has no {missing} target(s); its targets are {sorted(targets)}.")
            return torch.tensor(math.nan)
        return sum(self.weights[task] * loss for task, loss in parts.items())


def create(backbone: str, num_identities: int, pretrained: bool = False, weights_file: str | Path | None = None,
           hidden: int = 512, embedding_dim: int = 512, gender_dropout: float = 0.5,
           verification_dropout: float = 0.4, s: float = 64.0, m: float = 0.5, easy_margin: bool = False,
           **kwargs) -> DualHeadModel:
    """A :class:`DualHeadModel` on any ``helpers.models.backbones`` name (``kwargs`` go to the backbone, e.g.
    ``drop_path_rate``) with ``num_identities`` ArcFace centres."""
    trunk, info = create_backbone(backbone, pretrained, weights_file, **kwargs)
    return DualHeadModel(trunk, mlp_head(trunk.num_features, NUM_GENDERS, hidden, gender_dropout),
                         EmbeddingMLP(trunk.num_features, embedding_dim, hidden, verification_dropout),
                         ArcFace(embedding_dim, num_identities, s=s, m=m, easy_margin=easy_margin), info)
