"""One factory over timm, torchvision, facenet-pytorch and our scratch ConvNeXt.

``create_backbone(name)`` returns a module whose ``forward`` gives pooled features ``(B, num_features)`` and a
:class:`ModelInfo` with the preprocessing that belongs to it (input sizes and normalisation).
``create_model(name, num_classes)`` puts a head from :mod:`helpers.models.heads` on top.

Names: a timm model name (``resnet50``, ``mobilenetv2_100``, ``inception_v3``, ``vit_large_patch32_224``...),
``torchvision/resnet50``, ``torchvision/mobilenet_v2``, ``facenet/vggface2``, ``facenet/casia-webface``,
``scratch/convnext_tiny`` (any variant of :mod:`helpers.models.convnext`).

Pretrained weights come from the library's own source when online, or from a local file:
``weights_file=PATH``, or for torchvision and facenet the file placed in ``torch.hub.get_dir()/checkpoints``.
Offline without them, :class:`WeightsUnavailableError` names the exact file and where to put it.

Freezing policies over the backbone live in :mod:`helpers.models.freezing`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import timm
import torch
import torchvision
from torch import nn

from helpers import transforms
from helpers.models import convnext
from helpers.models.heads import LinearHead, MLPHead

FACENET_RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
FACENET_URLS = {  # facenet-pytorch's release files: InceptionResnetV1 with logits for 8631 / 10575 identities
    "vggface2": (FACENET_RELEASE + "20180402-114759-vggface2.pt", 8631),
    "casia-webface": (FACENET_RELEASE + "20180408-102900-casia-webface.pt", 10575),
}
TORCHVISION_HEADS = {"resnet50": "fc", "mobilenet_v2": "classifier"}  # the classifier replaced by Identity
CNN_MIN_SIZE = 32  # one pixel left after a stride-32 network
INCEPTION_MIN_SIZE = 75  # smallest input of the Inception family (measured: 74 px fails in the last blocks)
TIMM_MIN_SIZES = {"inception_v3": INCEPTION_MIN_SIZE, "inception_v4": INCEPTION_MIN_SIZE,
                  "inception_resnet_v2": INCEPTION_MIN_SIZE}

class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but neither a local file nor the network could provide them."""


@dataclass(frozen=True)
class ModelInfo:
    """What a backbone expects: its source, input sizes and normalisation.

    ``norm`` is a :data:`helpers.transforms.NORMS` key: ``"imagenet"`` for ImageNet mean/std, ``"facenet"``
    for inputs scaled to [-1, 1] (facenet's fixed standardisation; also timm's Inception and ViT-orig models,
    whose mean/std are 0.5).
    """

    name: str
    source: str  # "timm", "torchvision", "facenet" or "scratch"
    input_size: tuple[int, int]  # (minimum, default) side in pixels
    norm: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str | None = None  # where the weights came from; None: random initialisation

    def transform(self, augment: str, image_size: int | None = None, train: bool = True):
        """The train (level ``augment``) or eval transform for this backbone at ``image_size`` (default: its
        own size), with its normalisation."""
        return transforms.build(augment, image_size or self.input_size[1], train, self.norm)


def _norm_for(mean: Sequence[float]) -> str:
    return "facenet" if all(math.isclose(m, 0.5) for m in mean) else "imagenet"


def _offline_error(what: str, file: Path | str, url: str, destination: str,
                   err: Exception) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"Pretrained weights for {what} are not available offline ({type(err).__name__}: {err}).\n"
        f"Download {url}\non a machine with internet and put the file at\n    {destination}\n"
        f"(expected file: {Path(file).name}), or pass weights_file=PATH. "
        "Or use pretrained=False for random weights (the demo profile does).")


def _require_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights_file {path} does not exist; give the path of a downloaded "
                                "checkpoint.")
    return path


def hub_checkpoint(url: str, what: str) -> Path:
    """``torch.hub.get_dir()/checkpoints/<file of url>``, downloaded there first if absent (torchvision's and
    facenet-pytorch's cache), or a :class:`WeightsUnavailableError` naming the file when offline."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path))
        except (URLError, OSError) as err:
            raise _offline_error(what, path, url, str(path), err) from err
    return path


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def _timm(name: str, pretrained: bool, weights_file, **kwargs) -> tuple[nn.Module, ModelInfo]:
    overlay = {"file": str(_require_file(weights_file))} if weights_file else None
    try:
        model = timm.create_model(name, pretrained=pretrained or overlay is not None, num_classes=0,
                                  pretrained_cfg_overlay=overlay, **kwargs)
    except (URLError, OSError) as err:
        cfg = timm.models.get_pretrained_cfg(name)
        url = (f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/model.safetensors"
               if cfg.hf_hub_id else cfg.url)
        raise _offline_error(f"timm/{name}", Path(url).name, url,
                             "any path, then create_backbone(..., weights_file=PATH) (timm loads it with "
                             "pretrained_cfg_overlay=dict(file=PATH))", err) from err
    data = timm.data.resolve_data_config({}, model=model)
    cfg = model.pretrained_cfg
    side = data["input_size"][-1]
    smallest = (cfg.get("min_input_size") or (3, TIMM_MIN_SIZES.get(name, CNN_MIN_SIZE)))[-1]
    if hasattr(model, "patch_embed"):  # transformers take one fixed size, set with img_size=...
        smallest = side = model.patch_embed.img_size[-1]
    weights = None
    if overlay or pretrained:
        weights = overlay["file"] if overlay else cfg.get("hf_hub_id") or cfg.get("url")
    info = ModelInfo(name, "timm", (smallest, side), _norm_for(data["mean"]),
                     tuple(data["mean"]), tuple(data["std"]), weights)
    return model, info


def _torchvision(arch: str, pretrained: bool, weights_file) -> tuple[nn.Module, ModelInfo]:
    if arch not in TORCHVISION_HEADS:
        raise ValueError(f"torchvision/{arch} is not wired; choose one of {sorted(TORCHVISION_HEADS)}.")
    model = torchvision.models.get_model(arch, weights=None)
    weights = None
    if pretrained or weights_file:
        url = torchvision.models.get_model_weights(arch).DEFAULT.url
        path = _require_file(weights_file) if weights_file else hub_checkpoint(url, f"torchvision/{arch}")
        model.load_state_dict(_load_file(path))
        weights = str(path)
    head = TORCHVISION_HEADS[arch]
    classifier = getattr(model, head)  # resnet: Linear; mobilenet: Sequential(Dropout, Linear)
    model.num_features = (classifier[-1] if isinstance(classifier, nn.Sequential) else classifier).in_features
    setattr(model, head, nn.Identity())
    info = ModelInfo(f"torchvision/{arch}", "torchvision", (CNN_MIN_SIZE, 224), "imagenet",
                     transforms.IMAGENET_MEAN, transforms.IMAGENET_STD, weights)
    return model, info


def _facenet(dataset: str, pretrained: bool, weights_file) -> tuple[nn.Module, ModelInfo]:
    """InceptionResnetV1 whose forward returns the 512-d embedding *before* L2 normalisation (its
    ``last_bn`` output, which facenet's own classifier reads); normalise it yourself for verification."""
    if dataset not in FACENET_URLS:
        raise ValueError(f"facenet/{dataset} is unknown; choose one of {sorted(FACENET_URLS)}.")
    from facenet_pytorch import InceptionResnetV1  # imported here: only this model needs the package

    url, n_identities = FACENET_URLS[dataset]
    model = InceptionResnetV1(classify=True, num_classes=n_identities)
    weights = None
    if pretrained or weights_file:
        path = _require_file(weights_file) if weights_file else hub_checkpoint(url, f"facenet/{dataset}")
        model.load_state_dict(_load_file(path))
        weights = str(path)
    model.logits = nn.Identity()
    model.num_features = model.last_bn.num_features
    info = ModelInfo(f"facenet/{dataset}", "facenet", (INCEPTION_MIN_SIZE, 160), "facenet",
                     transforms.FACENET_MEAN, transforms.FACENET_STD, weights)
    return model, info


def _scratch(variant: str, pretrained: bool, weights_file, **kwargs) -> tuple[nn.Module, ModelInfo]:
    """Our hand-written ConvNeXt with no classifier (forward = pooled, LayerNorm-ed features). Weights: a
    timm ``convnext_*`` state dict (or one of ours) given as ``weights_file``."""
    if pretrained and not weights_file:
        raise ValueError(f"scratch/{variant} has no download; pass weights_file=PATH of a timm {variant} "
                         "checkpoint, or use the timm model name for pretrained weights.")
    model = convnext.create(variant, num_classes=0, **kwargs)
    weights = None
    if weights_file:
        path = _require_file(weights_file)
        state = {k: v for k, v in _load_file(path).items() if not k.startswith("head.fc.")}
        convnext.load_timm_state_dict(model, state)
        weights = str(path)
    info = ModelInfo(f"scratch/{variant}", "scratch", (CNN_MIN_SIZE, 224), "imagenet",
                     transforms.IMAGENET_MEAN, transforms.IMAGENET_STD, weights)
    return model, info


def create_backbone(name: str, pretrained: bool = False, weights_file: str | Path | None = None,
                    **kwargs) -> tuple[nn.Module, ModelInfo]:
    """A feature extractor ``(B, 3, H, W) -> (B, num_features)`` (attribute ``num_features``) and its
    :class:`ModelInfo`. ``weights_file`` implies pretrained weights from that file; ``kwargs`` go to timm
    (e.g. ``img_size``, ``drop_path_rate``) or to the scratch ConvNeXt."""
    source, _, arch = name.rpartition("/")
    if source in ("", "timm"):
        return _timm(arch, pretrained, weights_file, **kwargs)
    if source == "scratch":
        return _scratch(arch, pretrained, weights_file, **kwargs)
    if kwargs:
        raise TypeError(f"{name}: extra arguments {sorted(kwargs)} are only for timm and scratch models.")
    if source == "torchvision":
        return _torchvision(arch, pretrained, weights_file)
    if source == "facenet":
        return _facenet(arch, pretrained, weights_file)
    raise ValueError(f"Unknown model source {source!r} in {name!r}; use a timm name, 'torchvision/...', "
                     "'facenet/vggface2', 'facenet/casia-webface' or 'scratch/convnext_*'.")


class FaceClassifier(nn.Module):
    """A backbone and a head: ``forward`` gives logits, ``embed`` the backbone's pooled features."""

    def __init__(self, backbone: nn.Module, head: nn.Module, info: ModelInfo):
        super().__init__()
        self.backbone, self.head, self.info = backbone, head, info

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def create_model(name: str, num_classes: int, pretrained: bool = False,
                 weights_file: str | Path | None = None, head: str | Sequence[int] = "linear",
                 dropout: float = 0.0, **kwargs) -> FaceClassifier:
    """:func:`create_backbone` plus a head: ``"linear"`` (dropout -> Linear) or a list of hidden sizes for an
    MLP (e.g. ``[1024, 512]``: Linear -> LeakyReLU -> Dropout per hidden layer, then the classifier)."""
    backbone, info = create_backbone(name, pretrained, weights_file, **kwargs)
    if head == "linear":
        classifier = LinearHead(backbone.num_features, num_classes, dropout)
    elif isinstance(head, Sequence) and not isinstance(head, str) and all(isinstance(h, int) for h in head):
        classifier = MLPHead(backbone.num_features, num_classes, list(head), dropout)
    else:
        raise ValueError(f"head={head!r}; use 'linear' or a list of hidden sizes such as [1024, 512].")
    return FaceClassifier(backbone, classifier, info)
