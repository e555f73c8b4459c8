"""ArcFace and multi-task losses.

ArcFace (Deng et al. 2019, "ArcFace: Additive Angular Margin Loss", arXiv:1801.07698) after insightface's
``arcface_torch``: L2-normalised embeddings and class centres, the target logit ``s*cos(theta + m)``, every
other logit ``s*cos(theta)``, cross-entropy on top. Cosines are computed in fp32 with autocast switched off
and clamped away from +-1, so bf16/fp16 training neither rounds the margin away nor feeds ``acos``/``sqrt``
a value they cannot differentiate.

Scale and margin: ``s=64, m=0.5`` are the paper's values for thousands of identities (MS1M, 85k classes).
``s`` is the softmax temperature on cosines in [-1, 1]. It must let the target reach a high probability
against the ``C - 1`` other classes: CosFace (Wang et al. 2018) bounds it below by
``(C - 1)/C * log((C - 1) p / (1 - p))``, which grows with ``log C`` (about 13 for 7,000 classes at
p = 0.99, about 7 for 24). Far above the bound the softmax saturates: separated samples stop contributing
and the few hard ones get very large gradients. With few classes that trains worse, so use ``s`` around
16-30 for tens to hundreds of identities (on the 24-identity demo twin, nearest-centre dev accuracy after
8 epochs: 81% at s=16, 78% at 30, 70% at 64) and keep ``m=0.5`` (lower it to 0.2-0.3 if training stalls).

With ``helpers.models.arcface.ArcFaceModel`` the model's outputs are the cosines to the class centres, so
``engine.fit``'s accuracy (argmax of the outputs) is the nearest-centre accuracy; pass ``loss_fn=model.loss``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ArcFace(nn.Module):
    """Additive angular margin loss with its own class centres (``weight``: num_classes x embedding_dim).

    ``forward(embeddings, labels)`` returns the mean cross-entropy over the margin logits (and the logits
    with ``return_logits=True``). When ``theta + m`` would pass pi, the target logit falls back to
    ``cos(theta) - m*sin(m)`` (insightface's ``th``/``mm`` trick), which keeps the logit decreasing in
    theta; ``easy_margin=True`` instead applies the margin only where ``cos(theta) > 0``.
    """

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 64.0, m: float = 0.5,
                 easy_margin: bool = False, label_smoothing: float = 0.0, eps: float = 1e-6):
        super().__init__()
        if not 0 <= m < math.pi / 2:
            raise ValueError(f"ArcFace margin m={m} must be in [0, pi/2) radians (0.5 rad is about 28.6 deg).")
        self.embedding_dim, self.num_classes = embedding_dim, num_classes
        self.s, self.m, self.easy_margin = s, m, easy_margin
        self.label_smoothing, self.eps = label_smoothing, eps
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)  # arcface_torch's init of the class centres

    def extra_repr(self) -> str:
        return (f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, s={self.s}, m={self.m}, "
                f"easy_margin={self.easy_margin}, label_smoothing={self.label_smoothing}")

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``cos(theta)`` of each embedding to each class centre, (B, num_classes), fp32, clamped to
        ``[-1 + eps, 1 - eps]``."""
        with torch.autocast(embeddings.device.type, enabled=False):
            emb = F.normalize(embeddings.float(), dim=1)
            centres = F.normalize(self.weight.float(), dim=1)
            return F.linear(emb, centres).clamp(-1 + self.eps, 1 - self.eps)

    def margin_logits(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``s*cos(theta + m)`` at each row's label, ``s*cos(theta)`` elsewhere (fp32)."""
        labels = _check_labels(labels, cosine.shape[1])
        with torch.autocast(cosine.device.type, enabled=False):
            cosine = cosine.float()
            cos_t = cosine.gather(1, labels[:, None])
            sin_t = (1.0 - cos_t * cos_t).clamp_min(self.eps).sqrt()
            cos_tm = cos_t * math.cos(self.m) - sin_t * math.sin(self.m)
            if self.easy_margin:
                target = torch.where(cos_t > 0, cos_tm, cos_t)
            else:
                target = torch.where(cos_t > math.cos(math.pi - self.m), cos_tm, cos_t - self.m * math.sin(self.m))
            return self.s * cosine.scatter(1, labels[:, None], target)

    def loss_from_cosine(self, cosine: torch.Tensor, labels: torch.Tensor, return_logits: bool = False):
        """The ArcFace loss from precomputed cosines (what ``helpers.models.arcface.ArcFaceModel`` outputs)."""
        logits = self.margin_logits(cosine, labels)
        loss = F.cross_entropy(logits, labels.long(), label_smoothing=self.label_smoothing)
        return (loss, logits) if return_logits else loss

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, return_logits: bool = False):
        """The ArcFace loss of raw embeddings (normalised here); ``return_logits`` adds the margin logits."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"ArcFace expects embeddings of shape (B, {self.embedding_dim}), got "
                             f"{tuple(embeddings.shape)}; wrap the model in ArcFaceModel to train with engine.fit.")
        return self.loss_from_cosine(self.cosine(embeddings), labels, return_logits)


def _check_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    if labels.is_floating_point() or labels.ndim != 1:
        raise ValueError(f"ArcFace needs integer class labels of shape (B,), got {labels.dtype} "
                         f"{tuple(labels.shape)}; MixUp/CutMix soft targets do not combine with a margin loss.")
    labels = labels.long()
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"ArcFace labels must lie in [0, {num_classes - 1}], got "
                         f"[{labels.min().item()}, {labels.max().item()}].")
    return labels


class MultiTaskLoss(nn.Module):
    """Weighted sum of the gender, race and age losses of a multi-task model's dict outputs.

    Targets are a dict ``{gender, race, age, age_years}`` (``helpers.attributes.make_loaders``). gender:
    cross-entropy; race: cross-entropy weighted by ``race_weights`` (e.g. ``helpers.attributes.race_weights``
    of the training split, against race imbalance); age: L1 on years divided by the ``age_range`` width
    (the seed's range-normalised MAE, ``age_mode="regression"``) or cross-entropy over the 9 age bins
    (``"classification"``). ``weights`` scales each task (default 1 each). ``tasks`` picks the tasks summed
    (default all three; e.g. ``("gender", "age")`` for Adience, which has no race label); only their outputs
    and targets are needed. Every task is computed in fp32; after each call ``last`` holds each task's loss
    (detached) for logging.
    """

    TASKS = ("gender", "race", "age")

    def __init__(self, weights: dict[str, float] | None = None, race_weights: torch.Tensor | None = None,
                 age_mode: str = "regression", age_range: tuple[float, float] = (0.0, 100.0),
                 label_smoothing: float = 0.0, tasks: Sequence[str] = TASKS):
        super().__init__()
        unknown = (set(weights or {}) | set(tasks)) - set(self.TASKS)
        if unknown or not tasks or age_mode not in ("regression", "classification"):
            raise ValueError(f"MultiTaskLoss: tasks and weights keys must be among {self.TASKS} (got "
                             f"{sorted(unknown) or list(tasks)}) and age_mode 'regression' or 'classification' "
                             f"(got {age_mode!r}).")
        self.tasks = tuple(tasks)
        self.weights = {**dict.fromkeys(self.tasks, 1.0), **(weights or {})}
        self.age_mode, self.age_scale = age_mode, float(age_range[1] - age_range[0])
        self.label_smoothing = label_smoothing
        self.register_buffer("race_weights", None if race_weights is None else
                             torch.as_tensor(race_weights, dtype=torch.float32))
        self.last: dict[str, torch.Tensor] = {}

    def extra_repr(self) -> str:
        return f"weights={self.weights}, age_mode={self.age_mode!r}, age_scale={self.age_scale}"

    def _cross_entropy(self, logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None):
        return F.cross_entropy(logits.float(), labels.long(), weight=weight,
                               label_smoothing=self.label_smoothing)

    def _age(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.age_mode == "regression":
            return F.l1_loss(outputs["age"].float(), targets["age_years"].float()) / self.age_scale
        return self._cross_entropy(outputs["age"], targets["age"])

    def components(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict:
        """Each task's unweighted loss, e.g. ``{gender, race, age}``."""
        years = ["age_years"] if "age" in self.tasks and self.age_mode == "regression" else []
        missing = [f"outputs[{k!r}]" for k in self.tasks if k not in outputs]
        missing += [f"targets[{k!r}]" for k in (*self.tasks, *years) if k not in targets]
        if missing:
            raise KeyError(f"MultiTaskLoss: missing {missing}. The model must return {list(self.tasks)} and "
                           f"the targets be {[*self.tasks, *years]} (helpers.attributes.make_loaders).")
        losses = {"gender": lambda: self._cross_entropy(outputs["gender"], targets["gender"]),
                  "race": lambda: self._cross_entropy(outputs["race"], targets["race"], self.race_weights),
                  "age": lambda: self._age(outputs, targets)}
        with torch.autocast(outputs[self.tasks[0]].device.type, enabled=False):
            return {task: losses[task]() for task in self.tasks}

    def forward(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = self.components(outputs, targets)
        self.last = {task: loss.detach() for task, loss in parts.items()}
        return sum(self.weights[task] * loss for task, loss in parts.items())
