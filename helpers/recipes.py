"""Each notebook's hyper-parameters as data: a ``TrainConfig`` for the engine plus the model and data fields,
the source of every value, and the values the demo profile swaps in.

``resolve(notebook, variant, **params)`` is the one path from a recipe to the run: the profile's values first
(the demo profile: ``DEMO_DEFAULTS`` and the recipe's own ``demo`` data), then the notebook's parameters
(``EPOCHS``, ``IMAGE_SIZE``, ``BATCH_SIZE``, ``LR``, ``MODEL``, ``NUM_WORKERS``, ``AUGMENT``... passed lower
case; ``None`` means "the recipe's value"). The result records which values the parameters set, and the run
folder's ``config.json`` and the results registry keep it.

Sources:
  [paper]  Liu et al. 2022, "A ConvNet for the 2020s" (arXiv:2201.03545), ImageNet-1K settings: AdamW, lr 4e-3
           at batch 4096, weight decay 0.05, 300 epochs with a 20-epoch warm-up then cosine, stochastic depth
           0.1 for ConvNeXt-T, label smoothing 0.1, layer scale 1e-6, EMA 0.9999, MixUp/CutMix, RandAugment.
  [seed01] the CMU 11-785 HW2P2 ConvNeXt-T report (seeds/001_b073262f6853f38c.txt): ConvNeXt-T 3,3,9,3 with
           BatchNorm in the block, 7,000 identities at 224 px, batch 64-124, SGD lr 0.1 with momentum and
           weight decay, label smoothing, stochastic depth, mixed precision, ReduceLROnPlateau on the
           validation loss; 92.39% dev accuracy.
  [code]   the official ConvNeXt training code (facebookresearch/ConvNeXt main.py defaults).
  [seed04] the CS 405 face-classification report (seeds/004_341cbf375c31999f.txt): 7,000 identities x 20
           images, 80/20 random split, batch 64. ResNet-50 (ImageNet, 224 px): Adam 1e-3, weight decay 1e-5, 17
           epochs, dropout 0.5, label smoothing 0.1, all layers trained -> 53.97 / 51.76 / 51.91% train / val /
           test. MobileNetV2: AdamW 5e-5, weight decay 1e-2, dropout 0.5, ReduceLROnPlateau patience 2, 25
           epochs, all frozen but the last 10 layers -> 56.74% test. InceptionResnetV1 (VGGFace2, 160 px in
           [-1, 1]): head [1024, 512] LeakyReLU + dropout 0.5, Adam 1e-3 then 5e-4, plateau patience 2 min
           1e-6, weight decay 1e-4, label smoothing 0.1, 10 epochs, 3 frozen then the last 15 layers
           -> 79.02% (Kaggle 0.79).
  [finetune] Kornblith, Shlens & Le 2019 (CVPR) and Howard & Ruder 2018 (ULMFiT): fine-tune at rates well
           below from-scratch ones, lower for the pretrained body than for a new head, after a warm-up.
  [arcface] Deng et al. 2019 (arXiv:1801.07698) and insightface's arcface_torch: s=64, m=0.5, 512-d
           embedding from BN-dropout-FC-BN, SGD 0.1, weight decay 5e-4, batch 128 per GPU, clip 5.
  [seed00] the ConvNeXt + ArcFace report (seeds/000_7f2a1695d4af41c7.txt): 512-d embedding head with
           BatchNorm and dropout 0.4-0.5, ArcFace 64 / 0.5, separate rates for backbone and heads.
  [seed08] the FairFace multi-task report (seeds/002_cae96d215053afa5.txt): four conv blocks, a shared FC
           layer and task heads with dropout; BCE gender, class-weighted CE race, range-normalised MAE age;
           Adam 1e-4, batch 32, 20 epochs, 70/15/15 split, 1-3% subsets for quick runs.
  [fairface] Karkkainen & Joo 2021, "FairFace" (WACV): ResNet-34, ImageNet-pretrained, 224 px face crops.
  [realdata] measured in this repository on the real faces of ../shared/realdata (bench/, README "On real faces").
  [ours]   measured here on the demo twin (CPU) or chosen by this project; [assumed] the source is silent.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import pandas as pd

from helpers import config
from helpers.engine import Stage, TrainConfig

TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}
# Every recipe in the demo profile (CI on 2 CPU cores, the 32 px demo twin): small, fast, no downloads.
DEMO_DEFAULTS = {"image_size": 32, "batch_size": 32, "num_workers": 0, "pretrained": False}


@dataclass(frozen=True)
class Recipe:
    """A notebook's settings: ``train`` (the engine's ``TrainConfig``) and ``spec`` (model and data fields,
    read as attributes: ``recipe.image_size``), with ``sources`` per key, the ``demo`` overrides, and the
    notebook parameters that were applied (``params``)."""

    notebook: str
    variant: str
    train: TrainConfig
    spec: Mapping[str, Any]
    sources: Mapping[str, str]
    demo: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    profile: str = "recipe"

    def __getattr__(self, key: str):
        spec = self.__dict__.get("spec", {})
        if key in spec:
            return spec[key]
        raise AttributeError(f"{self.notebook} recipe has no field {key!r}; fields: {sorted(self.keys())}.")

    def keys(self) -> list[str]:
        """Every key ``with_values`` accepts: the spec's fields and the TrainConfig's."""
        return [*self.spec, *sorted(TRAIN_FIELDS)]

    def with_values(self, **values) -> Recipe:
        """A copy with ``values`` replaced: TrainConfig fields go to ``train``, the rest to ``spec``; an unknown
        key is an error naming the known ones."""
        unknown = sorted(set(values) - set(self.keys()))
        if unknown:
            raise KeyError(f"{self.notebook}: unknown setting(s) {unknown}; known: {sorted(self.keys())}.")
        train = {k: v for k, v in values.items() if k in TRAIN_FIELDS}
        spec = {**self.spec, **{k: v for k, v in values.items() if k not in TRAIN_FIELDS}}
        return replace(self, train=replace(self.train, **train), spec=spec)

    def variant_of(self, variant: str, demo: Mapping[str, Any] | None = None, **values: tuple[Any, str]) -> Recipe:
        """A named variant: ``values`` are ``(value, source)`` pairs replacing this recipe's; ``demo`` replaces
        its demo values (default: this recipe's)."""
        return replace(self.with_values(**{k: v for k, (v, _) in values.items()}), variant=variant,
                       sources={**self.sources, **{k: s for k, (_, s) in values.items()}},
                       demo=dict(self.demo if demo is None else demo))

    def for_profile(self, profile: config.Profile | None = None) -> Recipe:
        """This recipe as the profile runs it: unchanged in ``full``; in ``demo`` the ``DEMO_DEFAULTS`` this
        recipe has, then its own ``demo`` values."""
        profile = profile or config.profile()
        if not profile.demo:
            return replace(self, profile=profile.name)
        defaults = {k: v for k, v in DEMO_DEFAULTS.items() if k in self.keys()}
        return replace(self.with_values(**{**defaults, **self.demo}), profile=profile.name)

    def with_params(self, **params) -> Recipe:
        """Apply a notebook's parameters: every value that is not None replaces the recipe's; recorded."""
        given = {k: v for k, v in params.items() if v is not None}
        return replace(self.with_values(**given), params={**self.params, **given})

    def table(self) -> pd.DataFrame:
        """Every setting with its value and source (``"parameter"`` where a notebook parameter set it)."""
        demo = {*self.demo, *DEMO_DEFAULTS} if self.profile == "demo" else set()

        def source(key: str) -> str:
            if key in self.params:
                return "notebook parameter"
            return "demo profile" if key in demo else self.sources.get(key, "engine default")
        values = {**self.spec, **asdict(self.train)}
        rows = {k: {"value": str(v), "source": source(k)} for k, v in values.items()}
        return pd.DataFrame.from_dict(rows, orient="index")

    def record(self) -> dict:
        """Everything that defines the run, JSON-ready: names, spec, TrainConfig, parameters and profile."""
        return {"notebook": self.notebook, "variant": self.variant, "profile": self.profile, **self.spec,
                "train": asdict(self.train), "params": dict(self.params)}


def define(notebook: str, variant: str, demo: Mapping[str, Any] | None = None,
           **values: tuple[Any, str]) -> Recipe:
    """A recipe from ``key=(value, source)`` pairs; keys that are TrainConfig fields build its ``train``."""
    train = {k: v for k, (v, _) in values.items() if k in TRAIN_FIELDS}
    spec = {k: v for k, (v, _) in values.items() if k not in TRAIN_FIELDS}
    return Recipe(notebook, variant, TrainConfig(**train), spec, {k: s for k, (_, s) in values.items()},
                  dict(demo or {}))


# ------------------------------------------------------------------------------ 03-06 identity classifiers
CLASSIFIER = {
    "pretrained": (False, "random initialisation"),
    "head": ("linear", "dropout then the classifier"), "dropout": (0.0, "[ours]"),
    "num_workers": (None, "None: the profile's (up to 8)"),
    "pipeline": (None, "None: packed JPEGs augmented on the GPU where CUDA is available, else PIL on CPU"),
    "frozen_epochs": (0, "epochs with the backbone frozen (head only) before `freeze` applies"),
    "freeze": ("full", "policy after the frozen epochs: 'full', 'head' or ('last', N)"),
    "lr_unfrozen": (None, "the rate once the backbone trains (None: lr)"),
    "backbone_lr_scale": (1.0, "lr multiplier of the backbone's parameters"),
    "val_fraction": (0.2, "[seed04] 80/20 split of train (CS 405; HW2P2 has its dev split)"),
    "mixup_alpha": (0.0, "off"), "cutmix_alpha": (0.0, "off"),
    "amp": ("auto", "bf16 where supported, else fp16 + GradScaler"),
    "channels_last": (True, "timm habit: faster convolutions under AMP on GPUs"), "seed": (0, "[ours]"),
}

# ------------------------------------------------------------------------------- 03 ConvNeXt from scratch
# Demo: convnext_atto on the 32 px twin (24 identities x 16 images). [ours] 2 CPU cores: 3 epochs ~27% dev,
# 6 ~45%, 12 ~54% in 28 s, 15 ~60% (chance 4%); lr 8e-3 worse than 4e-3; no warm-up worse than one epoch.
CONVNEXT = define(
    "03_convnext_from_scratch", "paper",
    demo={"model": "scratch/convnext_atto", "epochs": 12, "lr": 4e-3, "warmup_epochs": 1, "drop_path_rate": 0.0,
          "ema_decay": 0.999, "augment": "light"},
    **{**CLASSIFIER,
       "mixup_alpha": (0.0, "[paper] 0.8; off: [seed01] reached 92.39% without it"),
       "cutmix_alpha": (0.0, "[paper] 1.0; off for the same reason")},
    model=("scratch/convnext_tiny", "[seed01] ConvNeXt-T (3,3,9,3; 96..768): 33.20M parameters, 7,000 classes"),
    norm=("layernorm", "[paper]; [seed01] used BatchNorm in the block (variant cmu_seed)"),
    drop_path_rate=(0.1, "[paper] ConvNeXt-T on ImageNet-1K; [seed01] used stochastic depth"),
    image_size=(224, "[seed01] the HW2P2 images are 224x224"),
    batch_size=(128, "[seed01] 64-124; [ours] 8.2 GiB peak in bf16 with EMA on an H100: fits a 16 GB T4"),
    augment=("light", ("[realdata] on real faces the heavy HW2P2 list underfits a from-scratch ConvNeXt at our "
                      "budgets (README); 'heavy' for long runs on all 140k images")),
    epochs=(50, "[seed01] trained 10-350; [ours] one GPU session (~2,000 img/s on an H100 in bf16)"),
    optimizer=("adamw", "[paper]"),
    lr=(2e-3, ("[realdata] AdamW sweep, convnext_atto 64 px on real faces (bench/realdata_lr.py): test acc. at "
              "3.1e-5 / 1.25e-4 / 1e-3 / 2e-3 / 4e-3 = Pins 5.6 / 9.6 / 14.4 / 12.4 / 13.2% (b32, 12 ep), AT&T "
              "45 / 80 / 96.3 / 95 / 95% (b32, 40 ep); b64 the same plateau: the paper's linear scaling to "
              "batch 128 (1.25e-4) sits far below it, no batch scaling")),
    weight_decay=(0.05, "[paper]"),
    scheduler=("cosine", "[paper] linear warm-up then cosine decay"),
    warmup_epochs=(5, "[paper] 20 of 300 epochs; kept near that share (1/10) of our 50"),
    min_lr=(1e-6, "[code] main.py --min_lr"),
    label_smoothing=(0.1, "[paper]; [seed01] used label smoothing"),
    ema_decay=(0.9999, "[paper] EMA for ImageNet-1K training"),
    monitor=("val_acc", "the HW2P2 score is dev accuracy"),
    patience=(3, "plateau only (cmu_seed)"),
    compile=("auto", ("[ours] bench/bench.py --compile, ConvNeXt-T on an H100: 43 s to compile, then 1,974 -> "
                      "2,256 img/s, back after 4.9 of 50 epochs; 'auto' (helpers/compiling.py): on for GPUs of "
                      "capability >= 7.0 and runs of >= 1.36M images, off on CPU")),
)
CONVNEXT_CMU = CONVNEXT.variant_of(
    "cmu_seed",
    demo={"model": "scratch/convnext_atto", "epochs": 12, "drop_path_rate": 0.0},
    norm=("batchnorm", "[seed01] conv2d-BatchNorm2d-Conv2d-GELU-Conv2d-StochasticDepth"),
    optimizer=("sgd", "[seed01]"), lr=(0.1, "[seed01] initial lr 0.1"),
    momentum=(0.9, "[seed01] momentum; value assumed"), weight_decay=(1e-4, "[seed01] weight decay; value assumed"),
    scheduler=("plateau", "[seed01] ReduceLROnPlateau on the validation loss"),
    warmup_epochs=(0, "plateau has no warm-up"), monitor=("val_loss", "[seed01]"),
    ema_decay=(None, "[assumed] the report mentions no EMA"),
)

# ------------------------------------------------------------------------------ 04-06 transfer learning
# "Layer" in the freezing policies: a module owning parameters directly (helpers.models.freezing). Demo:
# random weights (no download in CI) on the 24-identity CS 405 twin. [ours] 1 CPU thread, 80/20 split, chance
# 4%: the seed's small rates barely move random weights, so the demos train at higher rates; resnet18 stands in
# for ResNet-50 (8 epochs ~35 s: 52% at 3e-3); MobileNetV2 trains all layers (10 epochs at 3e-3: 31%);
# InceptionResnetV1 keeps the staged freezing at 80 px (2 + 4 epochs: 20%).
TRANSFER_COMMON = dict(
    **{**CLASSIFIER,
       "pretrained": (True, "[seed04] ImageNet (VGGFace2 for InceptionResnetV1)"),
       "head": ("linear", "[seed04] dropout then the classifier"),
       "dropout": (0.5, "[seed04] all three models")},
    image_size=(224, "[seed04]"), batch_size=(64, "[seed04]"),
    augment=("light", "[realdata] flips and small crops; the seed's list is close to 'medium'"),
    monitor=("val_acc", "the competitions score accuracy"),
    warmup_epochs=(0.0, "[seed04] none"), min_lr=(0.0, "[seed04] none"), patience=(2, "plateau only"),
    label_smoothing=(0.0, "[seed04] none unless stated"),
)
RESNET50 = define(
    "04_resnet50", "seed",
    demo={"model": "resnet18", "epochs": 8, "lr": 3e-3, "dropout": 0.0, "backbone_lr_scale": 1.0},
    **{**TRANSFER_COMMON,
       "model": ("torchvision/resnet50", "[seed04] ImageNet ResNet-50 (25.6M), torchvision's"),
       "epochs": (17, "[seed04]"), "optimizer": ("adam", "[seed04] betas 0.9, 0.999"),
       "lr": (1e-3, "[seed04]"), "weight_decay": (1e-5, "[seed04] Adam: L2 added to the gradient"),
       "scheduler": ("none", "[seed04] names none: constant rate"),
       "label_smoothing": (0.1, "[seed04]"), "freeze": ("full", "[seed04] the entire model trained")})
# The seed reached only 54% on its own training images: it underfit. Adam at 1e-3 on every layer of a
# pretrained ResNet-50 under a fresh 7,000-way head rewrites the ImageNet features in the first steps.
RESNET50_IMPROVED = RESNET50.variant_of(
    "improved",
    optimizer=("adamw", "[finetune] decoupled weight decay"),
    backbone_lr_scale=(0.1, "[finetune] the body at 1e-4 while the new head keeps 1e-3"),
    weight_decay=(0.05, "[assumed] AdamW's usual value (not on norms and biases)"),
    scheduler=("cosine", "[assumed]"), warmup_epochs=(1, "[finetune] the head settles before the body moves"),
    min_lr=(1e-6, "[assumed]"),
)
MOBILENETV2 = define(
    "05_mobilenetv2", "seed",
    demo={"epochs": 10, "lr": 3e-3, "freeze": "full", "dropout": 0.2, "scheduler": "cosine",
          "warmup_epochs": 1, "monitor": "val_acc"},
    **{**TRANSFER_COMMON,
       "model": ("torchvision/mobilenet_v2", "[seed04] ImageNet MobileNetV2 (3.4M), torchvision's"),
       "epochs": (25, "[seed04]"), "optimizer": ("adamw", "[seed04]"), "lr": (5e-5, "[seed04]"),
       "weight_decay": (1e-2, "[seed04]"), "scheduler": ("plateau", "[seed04] ReduceLROnPlateau"),
       "patience": (2, "[seed04]"),
       "monitor": ("val_loss", "[assumed] the plateau's metric (Keras' default); also picks best.pt"),
       "freeze": (("last", 10), "[seed04] the last 10 layers (here 1.04M of the 2.2M body)")})
INCEPTION = define(
    "06_inception_resnet_v1", "seed",
    demo={"image_size": 80, "epochs": 6, "frozen_epochs": 2, "freeze": "full", "lr": 3e-3, "lr_unfrozen": 1e-3},
    **{**TRANSFER_COMMON,
       "model": ("facenet/vggface2", "[seed04] VGGFace2 weights (facenet-pytorch)"),
       "head": ((1024, 512), "[seed04] Dense [1024, 512] with LeakyReLU"),
       "image_size": (160, "[seed04] 160 px in [-1, 1] (facenet normalisation)"),
       "epochs": (10, "[seed04]"), "frozen_epochs": (3, "[seed04] the first 3 frozen"),
       "freeze": (("last", 15), "[seed04] then the last 15 layers fine-tuned"),
       "optimizer": ("adam", "[seed04]"), "lr": (1e-3, "[seed04] while frozen"),
       "lr_unfrozen": (5e-4, "[seed04] '1e-3 -> 5e-4', read as the rate once layers unfreeze"),
       "weight_decay": (1e-4, "[seed04]"), "scheduler": ("plateau", "[seed04] ReduceLROnPlateau"),
       "patience": (2, "[seed04]"), "min_lr": (1e-6, "[seed04]"),
       "monitor": ("val_loss", "[assumed] the plateau's metric; also picks best.pt"),
       "label_smoothing": (0.1, "[seed04]")})

# -------------------------------------------------------------------------------- 07 ArcFace verification
# Demo: convnext_atto from scratch, 8 epochs on the 24-identity twin. [ours] 32 px: heavy augmentation dev 40%,
# AUC 0.73 (too strong for 8 epochs); light crop + flip: s=16 dev 81%, AUC 0.81; s=30 78%; s=64 70%.
ARCFACE = define(
    "07_arcface_verification", "arcface",
    demo={"backbone": "scratch/convnext_atto", "init_from": None, "epochs": 8, "lr": 4e-3, "warmup_epochs": 1,
          "drop_path_rate": 0.0, "backbone_lr_scale": 1.0, "s": 16.0},
    backbone=("scratch/convnext_tiny", "notebook 03's network, so its checkpoint loads"),
    init_from=("latest", "INIT_FROM: 'latest' = the newest notebook-03 run's best.pt; a run folder; None"),
    embedding_dim=(512, "[arcface] [seed00]"),
    dropout=(0.0, "[arcface] 0 in arcface_torch; [seed00] 0.4-0.5 in its MLP head"),
    s=(64.0, "[arcface] [seed00] for thousands of identities (HW2P2: 7,000)"),
    m=(0.5, "[arcface] [seed00] additive angular margin, radians"),
    easy_margin=(False, "[arcface] arcface_torch keeps the cos(theta) - m sin(m) fallback"),
    image_size=(224, "[seed01] HW2P2 images are 224x224"), batch_size=(128, "[arcface] 128 per GPU"),
    num_workers=(None, "None: the profile's"),
    pipeline=(None, "None: packed JPEGs augmented on the GPU where CUDA is available"),
    augment=("light", "[ours] as notebook 03"),
    backbone_lr_scale=(0.1, "[finetune] [seed00] separate rates; only applied when fine-tuning"),
    drop_path_rate=(0.1, "as notebook 03 (ConvNeXt-T)"),
    gallery=("mean", "'mean' embedding per known identity, or 'best' image"),
    metric=("cosine", "[seed01] cosine (or 'euclidean') for the submissions"),
    flip_tta=(True, "embeddings averaged with the mirrored image"),
    epochs=(10, "[ours] a fine-tuning budget on top of notebook 03"),
    optimizer=("adamw", "notebook 03's optimizer, continued"),
    lr=(1e-3, "[finetune] fresh heads; the body trains at lr * backbone_lr_scale"),
    weight_decay=(0.05, "as notebook 03; [arcface] uses 5e-4 with SGD"),
    scheduler=("cosine", "[ours]"), warmup_epochs=(1.0, "lets the fresh class centres settle"),
    min_lr=(1e-6, "[ours]"), label_smoothing=(0.0, "[arcface] none (both models, so only the loss differs)"),
    clip_grad_norm=(5.0, "[arcface] train_v2.py"), amp=("auto", "[ours]"), channels_last=(True, "[ours]"),
    monitor=("val_acc", "dev accuracy (nearest class centre for ArcFace)"), seed=(0, "[ours]"),
)

# ------------------------------------------------------------------------------ 08 multi-task attributes
# Demo: both models on the 32 px FairFace twin (750 images) within ~90 s on 2 CPU cores; [ours] Adam at 1e-4
# barely moves in a few epochs there, 1e-3 learns every head; resnet18 stands in for resnet34.
ATTRIBUTES = define(
    "08_multitask_fairface", "baseline",
    demo={"epochs": 5, "lr": 1e-3},
    backbone=("baseline", "[seed08] the 4-block CNN; or any helpers.models.backbones name"),
    pretrained=(False, "[seed08] trained from scratch"),
    age_mode=("regression", "[seed08] age regression in years; 'classification': FairFace's 9 bins"),
    split=("stratified", "[seed08] 70/15/15 by race x gender; 'official': FairFace's own train/val"),
    fraction=(1.0, "[seed08] 0.01-0.03 for quick experiments"),
    image_size=(224, "[fairface] 224 px crops; [seed08] gives no size"), batch_size=(32, "[seed08]"),
    num_workers=(None, "None: the profile's"),
    pipeline=(None, "None: packed JPEGs augmented on the GPU where CUDA is available"),
    hidden=(256, "[assumed] shared layer width ([seed08] 'a shared layer')"),
    dropout=(0.3, "[assumed] ([seed08] 'dropout layers', rate not given)"),
    loss_weights=((1.0, 1.0, 1.0), "gender, race, age; [seed08] gives no values"),
    race_class_weights=(True, "[seed08] weighted cross-entropy for race imbalance"),
    augment=("medium", "[seed08] flips, rotations, colour jitter, crops"),
    epochs=(20, "[seed08]"), optimizer=("adam", "[seed08]"), lr=(1e-4, "[seed08]"),
    weight_decay=(0.0, "[seed08] mentions none"), scheduler=("none", "[seed08] a constant rate"),
    warmup_epochs=(0.0, "[seed08] none"), label_smoothing=(0.0, "[seed08] none"),
    clip_grad_norm=(None, "[seed08] none"),
    monitor=("val_loss", "the weighted sum of the three task losses on the validation split"),
    amp=("auto", "[ours]"), channels_last=(True, "[ours]"), seed=(0, "[ours]"),
)
ATTRIBUTES_RESNET = ATTRIBUTES.variant_of(
    "fairface_paper", demo={**ATTRIBUTES.demo, "backbone": "resnet18"},
    backbone=("resnet34", "[fairface] ImageNet-pretrained ResNet-34"), pretrained=(True, "[fairface]"),
)

RECIPES: dict[str, dict[str, Recipe]] = {
    "03_convnext_from_scratch": {"paper": CONVNEXT, "cmu_seed": CONVNEXT_CMU},
    "04_resnet50": {"seed": RESNET50, "improved": RESNET50_IMPROVED},
    "05_mobilenetv2": {"seed": MOBILENETV2},
    "06_inception_resnet_v1": {"seed": INCEPTION},
    "07_arcface_verification": {"arcface": ARCFACE},
    "08_multitask_fairface": {"baseline": ATTRIBUTES, "fairface_paper": ATTRIBUTES_RESNET},
}


def get(notebook: str, variant: str | None = None) -> Recipe:
    """The recipe of ``notebook`` (its first variant unless ``variant`` names another)."""
    if notebook not in RECIPES:
        raise KeyError(f"No recipe for {notebook!r}; known: {sorted(RECIPES)}.")
    variants = RECIPES[notebook]
    if variant is not None and variant not in variants:
        raise KeyError(f"{notebook} has no recipe variant {variant!r}; choose one of {sorted(variants)}.")
    return variants[variant] if variant is not None else next(iter(variants.values()))


def resolve(notebook: str, variant: str | None = None, **params) -> Recipe:
    """The recipe a notebook runs: ``get(notebook, variant)`` for the active profile, then the notebook's
    parameters (None: the recipe's value)."""
    return get(notebook, variant).for_profile().with_params(**params)


def stages(recipe: Recipe) -> list[Stage]:
    """The transfer-learning stages of a 04-06 recipe: the head alone for ``frozen_epochs`` (if any, and at
    least one epoch left after them), then the ``freeze`` policy at ``lr_unfrozen`` for the rest."""
    frozen_epochs = min(recipe.frozen_epochs, recipe.train.epochs - 1)
    head = [Stage("head", frozen_epochs, "head", overrides=_stage_lr(recipe, recipe.train.lr))]
    rest = Stage("fine-tune", recipe.train.epochs - frozen_epochs, recipe.freeze,
                 overrides=_stage_lr(recipe, recipe.lr_unfrozen or recipe.train.lr))
    return [*head, rest] if frozen_epochs else [rest]


def _stage_lr(recipe: Recipe, lr: float) -> dict:
    groups = {"backbone.": recipe.backbone_lr_scale} if recipe.backbone_lr_scale != 1.0 else {}
    return {"lr": lr, "param_groups": groups}


# ----------------------------------------------------------------------------- 09 dual-head FACECOM
# [seed00code] the seed author's public code (github.com/MalayM09/COMSYSHackathon, src/config.py): pretrained
# timm convnext_tiny; gender stage: the gender head alone at 5e-5, CosineAnnealingLR; verification stage:
# backbone 1e-4, verification head and ArcFace centres 3e-4, CosineAnnealingWarmRestarts(T_0=10, T_mult=2);
# joint stage: everything at 5e-6, ExponentialLR(0.95); dropout 0.4 (verification) / 0.5 (gender), weight decay
# 1e-3, label smoothing 0.1, gradient clipping 0.3, patience 15, loss weights 1:1.
# A stage: epochs, what trains besides the backbone (`trainable` prefixes; `freeze` is the backbone's policy),
# its rate as a multiple of `lr` (`lr_scale`), per-part multipliers (`rates`), schedule, early stopping (epochs
# without improvement of `monitor`, a history column of helpers.facecom.metrics_fn) and loss (helpers.facecom).
# Demo: [ours] 2 CPU cores, convnext_atto at 32 px on the FACECOM twin (160 + 40 Task A images; 12 + 6 Task B people
# x 24 images; a quarter of each train split held out as dev): 6 + 6 + 3 epochs at batch 16; unaugmented but for 10%
# distortions (a few hundred steps learn faster so); ArcFace m=0.2 (9 classes: after 5 epochs seen-people top-1 0.99,
# 0.87 at m=0.5); the joint stage at half the rate so that gender recovers from the verification stage. Seeds 0-4:
# Task A F1 0.69-0.76 (chance 0.5), Task B top-1 0.49-0.73 (chance 0.17, the untrained network ~0.68: the queries
# are copies of gallery images), top-1 on the training people 0.79-1.0 (untrained ~0.60).
STAGE_NAMES = ("gender", "verification", "joint")
DUALHEAD_MONITORS = {"gender": "val_task_a_f1", "verification": "val_task_b_top1", "joint": "val_combined"}


def _dualhead_stage(name: str, epochs: int, trainable: tuple[str, ...] | None, rates: Mapping[str, float],
                    scheduler: str, early_stopping: int, lr_scale: float = 1.0, freeze: str = "full",
                    **schedule) -> dict:
    """One stage of the 09 recipe as data (see ``dualhead_stages``)."""
    return {"epochs": epochs, "freeze": freeze, "trainable": trainable, "lr_scale": lr_scale, "rates": dict(rates),
            "scheduler": scheduler, **schedule, "early_stopping": early_stopping, "monitor": DUALHEAD_MONITORS[name],
            "loss": name}


ALL_PARTS = {"backbone.": 1.0, "gender_head.": 1.0, "verification_head.": 1.0, "arcface.": 1.0}
DUALHEAD = define(
    "09_dualhead_facecom", "scratch",
    demo={"model": "scratch/convnext_atto", "drop_path_rate": 0.0, "s": 16.0, "m": 0.2, "lr": 4e-3, "batch_size": 16,
          "epochs": 15, "augment": "none", "distortion_p": 0.1, "perspective_p": 0.0, "flip_tta": False,
          "dev_fraction": 0.25, "dev_identities": 0.25,
          "stage_gender": _dualhead_stage("gender", 6, ("gender_head.",), ALL_PARTS, "cosine", 3, warmup_epochs=1.0),
          "stage_verification": _dualhead_stage("verification", 6, ("verification_head.", "arcface."), ALL_PARTS,
                                                "cosine", 3),
          "stage_joint": _dualhead_stage("joint", 3, None, ALL_PARTS, "exponential", 3, lr_scale=0.5, gamma=0.8)},
    model=("scratch/convnext_tiny", ("[seed00] ConvNeXt-T; ours from random init (no download); variant 'seed': "
                                    "timm's ImageNet weights")),
    pretrained=(False, "random initialisation"),
    drop_path_rate=(0.1, "[paper] ConvNeXt-T"),
    hidden=(512, "[assumed] width of both MLP heads ([seed00] gives none)"),
    embedding_dim=(512, "[seed00] 512-d L2-normalised embedding"),
    gender_dropout=(0.5, "[seed00] 0.4-0.5; [seed00code] 0.5"),
    verification_dropout=(0.4, "[seed00] 0.4-0.5; [seed00code] 0.4"),
    s=(64.0, "[seed00] [arcface] scale"), m=(0.5, "[seed00] [arcface] margin, radians"),
    easy_margin=(False, "[arcface] cos(theta) - m sin(m) fallback"),
    joint_weight=(0.5, ("share of the gender loss in the joint stage's loss (identity: 1 - share); "
                       "[seed00code] weights 1:1")),
    class_weights=(True, "[ours] 'balanced' class weights in the gender loss against Task A's ~4:1 male:female"),
    image_size=(224, "[seed00] 224 px"), batch_size=(32, "[seed00]"),
    num_workers=(None, "None: the profile's"),
    augment=("medium", ("[seed00] colour jitter, rotations, flips: the 'medium' level (crop 0.8-1, flip, "
                       "rotation 10, colour jitter 0.2)")),
    distortion_p=(0.5, ("[seed00] noise, here as one of the seven FACECOM distortions (helpers.distortions), "
                       "drawn uniformly, on this share of training images")),
    perspective_p=(0.3, "[seed00] perspective changes; [seed00code] probability 0.3"),
    dev_fraction=(0.15, "[ours] of Task A train (stratified) held out: early stopping and model choice"),
    dev_identities=(0.1, ("[ours] of Task B train identities held out (unseen people): early stopping and the "
                         "pair threshold; the official val split is only scored")),
    flip_tta=(True, "embeddings averaged with the mirrored image"),
    stage_gender=(_dualhead_stage("gender", 15, ("gender_head.",), ALL_PARTS, "cosine", 5, warmup_epochs=1.0),
                  ("[seed00] 15 epochs; [seed00code] cosine; from scratch the backbone trains too; warm-up and "
                   "patience [assumed]")),
    stage_verification=(_dualhead_stage("verification", 40, ("verification_head.", "arcface."), ALL_PARTS,
                                        "cosine", 8, warmup_epochs=1.0),
                        ("[seed00] 40 epochs, cosine; from random init every part at one rate (the seed's "
                         "separate rates protect pretrained weights: variant 'seed'); patience [assumed]")),
    stage_joint=(_dualhead_stage("joint", 8, None, ALL_PARTS, "exponential", 3, lr_scale=0.1, gamma=0.95),
                 "[seed00] 8 epochs on the weighted sum; [seed00code] ExponentialLR(0.95) at a far lower rate"),
    epochs=(63, "[seed00] 15 + 40 + 8; EPOCHS splits a new total over the stages in these proportions"),
    optimizer=("adamw", "[seed00code] AdamW"), lr=(1e-3, ("[realdata] from-scratch ConvNeXt learns at 1e-3-4e-3 "
                                                         "(notebook 03); each stage scales it")),
    scheduler=("cosine", "each stage sets its own (stage_*): cosine, cosine, exponential"),
    weight_decay=(1e-3, "[seed00]"), label_smoothing=(0.1, "[seed00] gender cross-entropy"),
    clip_grad_norm=(5.0, "[arcface]"), amp=("auto", "[ours]"), channels_last=(True, "[ours]"),
    monitor=("val_combined", "0.3 Task A F1 + 0.7 Task B macro-F1 on the dev splits: picks the final weights"),
    seed=(0, "[ours]"),
)
SEED_RATES = {"backbone.": 1 / 3, "gender_head.": 1.0, "verification_head.": 1.0, "arcface.": 1.0}
DUALHEAD_SEED = DUALHEAD.variant_of(
    "seed",
    model=("convnext_tiny", "[seed00] [seed00code] timm's ImageNet ConvNeXt-T"),
    pretrained=(True, "[seed00] pretrained weights"), lr=(3e-4, "[seed00code] heads and centres 3e-4"),
    clip_grad_norm=(0.3, "[seed00code] MAX_GRAD_NORM"),
    stage_gender=(_dualhead_stage("gender", 15, ("gender_head.",), ALL_PARTS, "cosine", 15, lr_scale=1 / 6,
                                  freeze="head"),
                  "[seed00code] the gender head alone at 5e-5, cosine; patience 15"),
    stage_verification=(_dualhead_stage("verification", 40, ("verification_head.", "arcface."), SEED_RATES,
                                        "cosine", 15),
                        "[seed00code] backbone 1e-4, head and centres 3e-4, cosine (warm restarts there)"),
    stage_joint=(_dualhead_stage("joint", 8, None, ALL_PARTS, "exponential", 15, lr_scale=1 / 60, gamma=0.95),
                 "[seed00code] everything at 5e-6, ExponentialLR(0.95)"),
)
RECIPES["09_dualhead_facecom"] = {"scratch": DUALHEAD, "seed": DUALHEAD_SEED}


def split_epochs(total: int, shares: tuple[int, ...]) -> list[int]:
    """``total`` epochs over stages in proportion to ``shares`` (largest remainders), at least one each."""
    if total < len(shares):
        raise ValueError(f"{total} epochs cannot cover {len(shares)} stages; give at least {len(shares)}.")
    raw = [total * s / sum(shares) for s in shares]
    epochs = [max(1, int(r)) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - int(raw[i]), reverse=True):
        if sum(epochs) >= total:
            break
        epochs[i] += 1
    while sum(epochs) > total:  # the at-least-one floor overshot: take from the largest
        epochs[epochs.index(max(epochs))] -= 1
    return epochs


def _to_stage(recipe: Recipe, name: str, spec: Mapping, epochs: int) -> Stage:
    overrides = {"lr": recipe.train.lr * spec["lr_scale"], "param_groups": dict(spec["rates"]),
                 **{k: spec[k] for k in ("scheduler", "gamma", "warmup_epochs", "early_stopping", "monitor")
                    if k in spec}}
    return Stage(name, epochs, spec["freeze"], spec["trainable"], overrides, loss=spec["loss"], data=name)


def dualhead_stages(recipe: Recipe) -> list[Stage]:
    """The three stages of a 09 recipe (gender, verification, joint) as ``engine.Stage``s; ``recipe.train.epochs``
    spread over them in the recipe's proportions (exactly the stages' own epochs when unchanged)."""
    specs = [recipe.spec[f"stage_{name}"] for name in STAGE_NAMES]
    epochs = split_epochs(recipe.train.epochs, tuple(spec["epochs"] for spec in specs))
    return [_to_stage(recipe, name, spec, n) for name, spec, n in zip(STAGE_NAMES, specs, epochs, strict=True)]


def single_task_stages(recipe: Recipe) -> dict[str, list[Stage]]:
    """A gender-only and a verification-only run, each with its own stage's settings for as many epochs as the
    dual model trains on that task's data (its stage plus the joint stage): only sharing the backbone differs."""
    epochs = dict(zip(STAGE_NAMES, (stage.epochs for stage in dualhead_stages(recipe)), strict=True))
    return {f"{name} only": [_to_stage(recipe, name, recipe.spec[f"stage_{name}"], epochs[name] + epochs["joint"])]
            for name in ("gender", "verification")}


# ------------------------------------------------------------------------------- 10 Adience transfer learning
# Sources of this section:
#   [seed10]  the NTU gender-classification report (seeds/003_99acdb0cfc9f37b6.txt): Adience's 5 folds (17,492
#             images kept), 192 px, ImageNet ResNet-50 / Inception-v3 / Inception-ResNet-v2 / ViT-L/32 with
#             Dense 1024 -> 512 -> softmax, Inception-v3's first 52 (Keras) layers frozen, CelebA pre-training,
#             multi-task gender + age on Inception-v3 with hard sharing, Hyperband, RandAugment + MixUp. It gives
#             no learning rate, batch size or epoch count for these runs.
#   [levi]    Levi & Hassner 2015 (CVPR workshops): Adience's 5-fold subject-disjoint protocol.
#   [hyperband] Li et al. 2018 (arXiv:1603.06560): brackets of successive halving, reduction factor 3.
#   [mixup]   Zhang et al. 2018 (arXiv:1710.09412): alpha 0.1-0.4 on ImageNet; 0.2 is keras-cv's default.
# Demo: resnet10t with random weights on the 32 px Adience twin (20 subjects, ~250 images), 2 folds, 3 trials.
ADIENCE_SEARCH_SPACE = {"lr": ("log", 1e-5, 3e-3), "head_units": ("choice", (256, 512, 1024, 2048)),
                        "dropout": ("float", 0.0, 0.6)}
ADIENCE = define(
    "10_adience_transfer", "light",
    demo={"model": "resnet10t", "epochs": 4, "lr": 3e-3, "warmup_epochs": 0, "backbone_lr_scale": 1.0, "progress": False,
          "folds": 2, "trials": 3, "search_epochs": 2, "celeba_epochs": 2, "head": (64, 32),
          "search_space": {"lr": ("log", 1e-3, 1e-2), "head_units": ("choice", (32, 64, 128)),
                           "dropout": ("float", 0.0, 0.3)}},
    model=("resnet18", "[ours] ImageNet ResNet-18 (11.7M): the four experiments x 5 folds fit a free T4 session"),
    pretrained=(True, "[seed10] ImageNet weights"), model_kwargs=({}, "extra timm arguments"),
    head=((1024, 512), "[seed10] Dense 1024 -> 512 -> softmax"),
    dropout=(0.3, "[assumed] the seed gives none; searched"),
    freeze=("full", "[seed10] every layer trains (Inception-v3 excepted)"),
    backbone_lr_scale=(0.1, "[finetune] the pretrained body at a tenth of the new head's rate"),
    image_size=(192, "[seed10] 192x192"), batch_size=(64, "[assumed]"),
    num_workers=(None, "None: the profile's"),
    pipeline=(None, "None: packed JPEGs augmented on the GPU where CUDA is available"),
    augment=("light", "[seed10] random zoom and shear: crop + flip"),
    folds=(5, "[levi] train on four folds, test on the fifth; FOLDS runs fewer"),
    val_fraction=(0.1, "[ours] share of the training folds' subjects held out for model selection"),
    experiments=(("direct", "celeba", "multitask", "age"), "[seed10] direct vs CelebA first; single vs multi-task"),
    loss_weights=((1.0, 1.0), "gender, age; [seed10] gives none"),
    pretrain_celeba=(True, "[seed10] CelebA (Male attribute) before Adience"),
    celeba_epochs=(2, "[assumed] 325k images: over 20x Adience's training folds"),
    celeba_fraction=(1.0, "share of CelebA's 162,770 training images"),
    trials=(20, "[ours] Optuna trials; TRIALS=0 skips the search"),
    search_epochs=(9, "[hyperband] max resource: 9 epochs = 3^2, so rungs at 1, 3 and 9 epochs"),
    reduction_factor=(3, "[hyperband]"), sampler=("random", "[hyperband] random configurations, as Keras Tuner"),
    search_space=(ADIENCE_SEARCH_SPACE, "[seed10] learning rate, head units (u -> u/2) and dropout"),
    ablation_augment=("heavy", "[seed10] RandAugment: our heavy level (RandAugment 2 ops, magnitude 9, and more)"),
    ablation_mixup_alpha=(0.2, "[mixup]"),
    epochs=(10, "[assumed] the seed gives none"), optimizer=("adamw", "[finetune]"),
    lr=(3e-4, "[finetune] for the head; searched"), weight_decay=(0.05, "[assumed] AdamW's usual value"),
    scheduler=("cosine", "[assumed]"), warmup_epochs=(1.0, "[finetune] the head settles before the body moves"),
    min_lr=(1e-6, "[assumed]"), label_smoothing=(0.0, "[seed10] none"),
    monitor=("val_acc", "validation gender accuracy (multi-task runs: the summed loss)"),
    amp=("auto", "[ours]"), channels_last=(True, "[ours]"), seed=(0, "[ours]"),
)
ADIENCE_RESNET50 = ADIENCE.variant_of("resnet50", model=("resnet50", "[seed10] ImageNet ResNet-50"))
# Keras counts input, activation, pooling and concatenation layers too: InceptionV3's first 52 end inside mixed1,
# i.e. the stem, mixed0 and about four convolutions of mixed1 (with their batch norms): 32 of our layers.
ADIENCE_INCEPTION = ADIENCE.variant_of(
    "inception_v3", model=("inception_v3", "[seed10] ImageNet Inception-v3"),
    freeze=(("first", 32), "[seed10] the first 52 Keras layers = stem, Mixed_5b and 4 convs of Mixed_5c"))
ADIENCE_INCEPTION_RESNET = ADIENCE.variant_of(
    "inception_resnet_v2", model=("inception_resnet_v2", "[seed10] ImageNet Inception-ResNet-v2"))
ADIENCE_VIT = ADIENCE.variant_of(
    "vit_l32", model=("vit_large_patch32_224", "[seed10] ViT-L/32 (the seed's: ImageNet-21k)"),
    model_kwargs=({"dynamic_img_size": True}, "position embeddings resized to the 192 px grid (6x6 patches)"))
RECIPES["10_adience_transfer"] = {recipe.variant: recipe for recipe in (
    ADIENCE, ADIENCE_RESNET50, ADIENCE_INCEPTION, ADIENCE_INCEPTION_RESNET, ADIENCE_VIT)}
