"""ConvNeXt written by hand, following Liu et al. 2022, "A ConvNet for the 2020s" (arXiv:2201.03545).

The network "modernises" a ResNet towards a Swin Transformer:

* a patchify stem: 4x4 conv with stride 4, then LayerNorm;
* four stages at strides 4, 8, 16, 32, separated by downsampling layers (LayerNorm + 2x2 conv, stride 2);
* a block: 7x7 depthwise conv -> LayerNorm -> Linear (4x, inverted bottleneck) -> GELU -> Linear
  -> layer scale (initialised to 1e-6) -> stochastic depth, added to the shortcut;
* stochastic-depth rates rising linearly from 0 over all blocks;
* a head: global average pool -> LayerNorm -> Linear.

Names follow the official code (``dwconv``, ``pwconv1``, ``pwconv2``, ``gamma``) and timm's layout (``stem``,
``stages.i.downsample``, ``stages.i.blocks.j``, ``head.norm``, ``head.fc``); ``load_timm_state_dict`` maps a
timm ``convnext_*`` state dict onto this model. ``norm="batchnorm"`` swaps every LayerNorm of the body for
BatchNorm, as the CMU 11-785 ConvNeXt-T report did (its block: conv - BatchNorm2d - conv - GELU - conv -
StochasticDepth); the head keeps its LayerNorm.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torchvision.ops import StochasticDepth


@dataclass(frozen=True)
class Variant:
    depths: tuple[int, int, int, int]
    dims: tuple[int, int, int, int]


VARIANTS = {
    "convnext_atto": Variant((2, 2, 6, 2), (40, 80, 160, 320)),  # timm's smallest; for CPU/CI demos
    "convnext_tiny": Variant((3, 3, 9, 3), (96, 192, 384, 768)),  # paper, ConvNeXt-T
    "convnext_small": Variant((3, 3, 27, 3), (96, 192, 384, 768)),  # paper, ConvNeXt-S
    "convnext_base": Variant((3, 3, 27, 3), (128, 256, 512, 1024)),  # paper, ConvNeXt-B
}
NORMS = ("layernorm", "batchnorm")


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class BatchNormChannelsLast(nn.BatchNorm2d):
    """BatchNorm2d applied to an (N, H, W, C) tensor, so it can stand where the block's LayerNorm stands."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def norm_layers(norm: str) -> tuple[Callable[[int], nn.Module], Callable[[int], nn.Module]]:
    """(channels-first, channels-last) norm layers for ``norm``; LayerNorms use eps 1e-6 as in the paper."""
    if norm == "layernorm":
        return partial(LayerNorm2d, eps=1e-6), partial(nn.LayerNorm, eps=1e-6)
    if norm == "batchnorm":
        return nn.BatchNorm2d, BatchNormChannelsLast
    raise ValueError(f"norm={norm!r}; choose one of {NORMS}.")


class Block(nn.Module):
    """ConvNeXt block: dwconv 7x7 -> norm -> pwconv1 (C -> 4C) -> GELU -> pwconv2 (4C -> C) -> layer scale
    -> drop path, plus the shortcut. The pointwise convs are Linear layers on a channels-last view."""

    def __init__(self, dim: int, drop_path: float = 0.0, ls_init_value: float = 1e-6,
                 norm: str = "layernorm"):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)  # depthwise
        self.norm = norm_layers(norm)[1](dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)  # inverted bottleneck: expand 4x
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(ls_init_value * torch.ones(dim))  # layer scale
        self.drop_path = StochasticDepth(drop_path, mode="row")  # drops the residual branch per sample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        x = (self.gamma * x).permute(0, 3, 1, 2)
        return shortcut + self.drop_path(x)


class Stage(nn.Module):
    """Downsampling layer (norm + 2x2 conv, stride 2; none in stage 0, where the stem did it) and blocks."""

    def __init__(self, in_dim: int, dim: int, drop_path_rates: list[float], norm: str, ls_init_value: float,
                 downsample: bool):
        super().__init__()
        norm_cf = norm_layers(norm)[0]
        self.downsample = (nn.Sequential(norm_cf(in_dim), nn.Conv2d(in_dim, dim, kernel_size=2, stride=2))
                           if downsample else nn.Identity())
        self.blocks = nn.Sequential(*[Block(dim, rate, ls_init_value, norm) for rate in drop_path_rates])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class Head(nn.Module):
    """Global average pool -> LayerNorm -> Linear (``pre_logits`` stops before the Linear)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(x.mean(dim=(2, 3)))
        return x if pre_logits else self.fc(x)


def drop_path_rates(rate: float, depths: tuple[int, ...]) -> list[float]:
    """Stochastic-depth rate of every block, rising linearly from 0 to ``rate`` over all blocks."""
    return torch.linspace(0, rate, sum(depths)).tolist()


class ConvNeXt(nn.Module):
    """ConvNeXt classifier; ``forward_head(forward_features(x), pre_logits=True)`` is the pooled embedding."""

    def __init__(self, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), num_classes: int = 1000,
                 in_chans: int = 3, drop_path_rate: float = 0.0, ls_init_value: float = 1e-6,
                 norm: str = "layernorm"):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = dims[-1]
        self.stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4),  # "patchify"
                                  norm_layers(norm)[0](dims[0]))
        rates = drop_path_rates(drop_path_rate, depths)
        stages, first = [], 0
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            stages.append(Stage(dims[max(i - 1, 0)], dim, rates[first:first + depth], norm, ls_init_value,
                                downsample=i > 0))
            first += depth
        self.stages = nn.Sequential(*stages)
        self.head = Head(dims[-1], num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, dims[-1], H/32, W/32)."""
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def create(name: str, num_classes: int = 1000, drop_path_rate: float = 0.0, norm: str = "layernorm",
           **kwargs) -> ConvNeXt:
    """Build a ConvNeXt variant by name (``VARIANTS``); extra kwargs go to ``ConvNeXt``."""
    if name not in VARIANTS:
        raise ValueError(f"Unknown ConvNeXt variant {name!r}; choose one of {sorted(VARIANTS)}.")
    variant = VARIANTS[name]
    return ConvNeXt(variant.depths, variant.dims, num_classes=num_classes, drop_path_rate=drop_path_rate,
                    norm=norm, **kwargs)


# timm key fragment -> ours. Everything else (stem.*, stages.i.downsample.*, stages.i.blocks.j.norm/gamma,
# head.norm, head.fc) has the same name in both.
TIMM_KEY_MAP = {".conv_dw.": ".dwconv.", ".mlp.fc1.": ".pwconv1.", ".mlp.fc2.": ".pwconv2."}


def timm_key(key: str) -> str:
    """Our name for a timm ConvNeXt state-dict key."""
    for theirs, ours in TIMM_KEY_MAP.items():
        key = key.replace(theirs, ours)
    return key


def load_timm_state_dict(model: ConvNeXt, state_dict: dict[str, torch.Tensor], strict: bool = True):
    """Load a timm ``convnext_*`` state dict (layernorm variants) into ``model``.

    Mapping, timm -> ours:
      ``stages.i.blocks.j.conv_dw.*`` -> ``stages.i.blocks.j.dwconv.*``
      ``stages.i.blocks.j.mlp.fc1.*`` -> ``stages.i.blocks.j.pwconv1.*``
      ``stages.i.blocks.j.mlp.fc2.*`` -> ``stages.i.blocks.j.pwconv2.*``
      everything else keeps its name. timm's small variants (atto...nano) use 1x1 convs for the MLP
      (``conv_mlp=True``, weights (out, in, 1, 1)); those are squeezed into our Linear weights (out, in).
    Returns ``model.load_state_dict``'s missing/unexpected keys.
    """
    ours = {}
    for key, value in state_dict.items():
        new_key = timm_key(key)
        if (".pwconv1." in new_key or ".pwconv2." in new_key) and value.ndim == 4:
            value = value.flatten(1)
        ours[new_key] = value
    return model.load_state_dict(ours, strict=strict)
