"""Freezing policies over a model's backbone, counted in layers as Keras counts them.

A *layer* is a module that owns parameters directly (a conv, linear or norm layer; also a block's layer
scale or a ViT's position embedding), taken in registration order (``named_modules``); a BatchNorm is a layer
of its own. Policies: ``"full"`` trains every backbone layer, ``"head"`` none, ``("last", N)`` the last N,
``("first", N)`` all but the first N (Keras' ``for layer in base.layers[:N]: layer.trainable = False``).
Parameters outside ``model.backbone`` (heads, class centres) train unless ``trainable`` lists the prefixes
that may. A BatchNorm whose parameters are all frozen also keeps its running statistics:
:func:`frozen_norms_eval` holds it in eval mode (``engine.fit`` calls it after every ``model.train()``).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

Policy = str | tuple[str, int]  # "full" | "head" | ("last", N) | ("first", N): the first N frozen


def layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers of ``module``: modules owning parameters directly, in registration order."""
    return [(name, m) for name, m in module.named_modules()
            if next(m.parameters(recurse=False), None) is not None]


def _count(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def trainable_layers(policy: Policy, total: int) -> int:
    """How many of a backbone's ``total`` layers train under ``policy``."""
    if policy == "full":
        return total
    if policy == "head":
        return 0
    if isinstance(policy, (tuple, list)) and len(policy) == 2 and policy[0] in ("last", "first") \
            and int(policy[1]) >= 0:
        n = min(int(policy[1]), total)
        return n if policy[0] == "last" else total - n
    raise ValueError(f"Freezing policy {policy!r}; use 'full', 'head', ('last', N) or ('first', N).")


def summary(model: nn.Module, image_size: int | None = None) -> dict:
    """Parameter counts and the input size (``(3, side, side)``; default: the backbone's own size)."""
    side = image_size or model.info.input_size[1]
    return {"parameters": _count(model.parameters()),
            "trainable": _count(p for p in model.parameters() if p.requires_grad),
            "input_size": (3, side, side)}


def freeze(model: nn.Module, policy: Policy, trainable: Sequence[str] | None = None) -> dict:
    """Apply ``policy`` to ``model.backbone``; every other parameter trains, or only those whose name starts
    with one of ``trainable`` when given. Returns the counts: parameters, trainable parameters, backbone layers
    and how many of them train."""
    backbone_layers = layers(model.backbone)
    n = trainable_layers(policy, len(backbone_layers))
    backbone = {id(p) for p in model.backbone.parameters()}
    for name, param in model.named_parameters():
        if id(param) not in backbone:
            param.requires_grad_(trainable is None or name.startswith(tuple(trainable)))
    model.backbone.requires_grad_(False)
    for _, layer in backbone_layers[len(backbone_layers) - n:]:
        for param in layer.parameters(recurse=False):
            param.requires_grad_(True)
    return {"policy": policy, "parameters": _count(model.parameters()),
            "trainable": _count(p for p in model.parameters() if p.requires_grad),
            "layers": len(backbone_layers), "trainable_layers": n}


def frozen_norms_eval(model: nn.Module) -> int:
    """Put every BatchNorm whose parameters are all frozen in eval mode (its running statistics stay as they
    were); returns how many. Call after ``model.train()``."""
    frozen = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              and any(True for _ in m.parameters()) and not any(p.requires_grad for p in m.parameters())]
    for module in frozen:
        module.eval()
    return len(frozen)
