"""Each notebook's hyper-parameters as a dataclass, with the source of every value.

Sources:
  [paper]  Liu et al. 2022, "A ConvNet for the 2020s" (arXiv:2201.03545), ImageNet-1K training settings:
           AdamW, lr 4e-3 at batch 4096 (scaled linearly with the batch), weight decay 0.05, 300 epochs with
           a 20-epoch linear warm-up then cosine decay, stochastic depth 0.1 for ConvNeXt-T, label smoothing
           0.1, layer scale 1e-6, EMA 0.9999, MixUp 0.8 / CutMix 1.0, RandAugment, Random Erasing.
  [seed]   CMU 11-785 HW2P2 ConvNeXt-T report (/work/shared/seeds/001_b073262f6853f38c.txt): ConvNeXt-T
           3,3,9,3 with BatchNorm in the block, 33.19M params, 7,000 identities at 224x224, batch 64-124,
           10-350 epochs, SGD lr 0.1 with momentum and weight decay, label smoothing, stochastic depth,
           mixed precision, ReduceLROnPlateau on the validation loss; 92.39% dev classification accuracy.
  [code]   the official ConvNeXt training code (facebookresearch/ConvNeXt main.py defaults).
  [ours]   measured in this repository (helpers.engine on an H100, and the demo twin on CPU).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from helpers import config, engine, losses, results, transforms
from helpers.models import backbones, convnext, heads

# Demo profile (FACES_PROFILE=demo): convnext_atto from scratch on the 32 px hw2p2 demo twin (24 identities x
# 16 images). [ours] on 2 CPU cores (convnext_atto trains at ~450 img/s at 32 px, convnext_tiny at ~75):
# 3 epochs reach ~27% dev accuracy, 6 ~45%, 10 ~53%, 12 ~54% in 28 s, 15 ~60% (chance 4%); lr 8e-3 did
# worse than 4e-3, and no warm-up worse than one epoch.
CONVNEXT_DEMO = {"model": "convnext_atto", "epochs": 12, "lr": 4e-3, "warmup_epochs": 1,
                 "drop_path_rate": 0.0, "ema_decay": 0.999}


@dataclass(frozen=True)
class ConvNeXtRecipe:
    """Notebook 03: ConvNeXt trained from scratch on HW2P2 classification (7,000 identities)."""

    model: str = "convnext_tiny"  # [seed] ConvNeXt-T (3,3,9,3; 96..768): 33.20M params with 7,000 classes
    norm: str = "layernorm"  # [paper]; [seed] used BatchNorm in the block -> "batchnorm"
    image_size: int = 224  # [seed] the HW2P2 images are 224x224
    batch_size: int = 128  # [seed] 64-124; [ours] 8.2 GiB peak in bf16 with EMA, fits a 16 GB GPU
    epochs: int = 50  # [seed] trained 10-350; ours: one GPU session (H100, bf16: ~1,300 img/s [ours])
    optimizer: str = "adamw"  # [paper]
    lr: float = 4e-3 * 128 / 4096  # [paper] 4e-3 at batch 4096, scaled linearly to batch 128 (1.25e-4)
    momentum: float = 0.9  # SGD only (cmu_seed)
    weight_decay: float = 0.05  # [paper]
    scheduler: str = "cosine"  # [paper] linear warm-up then cosine decay
    warmup_epochs: float = 5  # [paper] 20 of 300 epochs; kept near that share (1/10) of our 50
    min_lr: float = 1e-6  # [code] main.py --min_lr default
    drop_path_rate: float = 0.1  # [paper] ConvNeXt-T on ImageNet-1K; [seed] used stochastic depth
    label_smoothing: float = 0.1  # [paper]; [seed] used label smoothing
    augment: str = "hw2p2"  # helpers.transforms recipe: [seed]'s torchvision list at mild magnitudes
    mixup_alpha: float = 0.0  # [paper] 0.8; off: [seed] reached 92.39% without it (transforms.mixup_cutmix)
    cutmix_alpha: float = 0.0  # [paper] 1.0; off for the same reason
    ema_decay: float | None = 0.9999  # [paper] EMA 0.9999 for ImageNet-1K training
    amp: str = "auto"  # [seed] mixed precision; bf16 where supported, else fp16 + GradScaler
    channels_last: bool = True  # timm habit: faster convolutions under AMP on GPUs
    clip_grad_norm: float | None = None  # [paper] no clipping
    monitor: str = "val_acc"  # the HW2P2 score is dev accuracy
    patience: int = 3  # "plateau" only (cmu_seed)
    seed: int = 0

    @classmethod
    def cmu_seed(cls) -> ConvNeXtRecipe:
        """The seed report's own setup, for comparison: BatchNorm blocks, SGD lr 0.1, ReduceLROnPlateau on the
        validation loss. Values the report does not give are marked as assumptions."""
        return cls(norm="batchnorm",  # [seed] conv2d-BatchNorm2d-Conv2d-GELU-Conv2d-StochasticDepth
                   optimizer="sgd", lr=0.1,  # [seed] SGD, initial lr 0.1
                   momentum=0.9, weight_decay=1e-4,  # [seed] "momentum", "weight decay"; values assumed
                   scheduler="plateau", warmup_epochs=0, monitor="val_loss",  # [seed] plateau on val loss
                   patience=3, ema_decay=None)  # assumed; [seed] mentions no EMA

    def for_profile(self, profile: config.Profile | None = None) -> ConvNeXtRecipe:
        """A copy sized for ``profile`` (default: the active one).

        Full-style profiles override ``image_size``, ``epochs`` and ``batch_size`` where they set them, the
        LR following the batch size linearly [paper]. The demo profile takes its image and batch sizes but
        swaps in ``CONVNEXT_DEMO``: the small ``convnext_atto`` (so CI on 2 cores stays fast) and 12 epochs
        instead of the profile's 3, because a ConvNeXt trained from scratch learns little in 3 epochs.
        """
        profile = profile or config.profile()
        image_size = profile.pick("image_size", self.image_size)
        batch_size = profile.pick("batch_size", self.batch_size)
        if profile.demo:
            return replace(self, image_size=image_size, batch_size=batch_size, **CONVNEXT_DEMO)
        return replace(self, image_size=image_size, batch_size=batch_size,
                       epochs=profile.pick("epochs", self.epochs), lr=self.lr * batch_size / self.batch_size)

    def collate_fn(self, num_classes: int):
        """MixUp/CutMix for the train loader when either alpha is set, else ``None`` (default collation)."""
        if not (self.mixup_alpha or self.cutmix_alpha):
            return None
        return transforms.mixup_cutmix(num_classes, self.mixup_alpha, self.cutmix_alpha)

    def build_model(self, num_classes: int) -> convnext.ConvNeXt:
        """The hand-written ConvNeXt of this recipe."""
        return convnext.create(self.model, num_classes=num_classes, drop_path_rate=self.drop_path_rate,
                               norm=self.norm)

    def train_config(self, **overrides) -> engine.TrainConfig:
        """The engine's ``TrainConfig`` for this recipe; ``overrides`` replace any of its fields."""
        cfg = engine.TrainConfig(
            epochs=self.epochs, lr=self.lr, optimizer=self.optimizer, momentum=self.momentum,
            weight_decay=self.weight_decay, scheduler=self.scheduler, warmup_epochs=self.warmup_epochs,
            min_lr=self.min_lr, patience=self.patience, label_smoothing=self.label_smoothing,
            clip_grad_norm=self.clip_grad_norm, amp=self.amp, channels_last=self.channels_last,
            ema_decay=self.ema_decay, monitor=self.monitor, seed=self.seed)
        return replace(cfg, **overrides)


# Notebook 08 sources:
#   [seed08]   FairFace multi-task capstone (/work/shared/seeds/002_cae96d215053afa5.txt): four conv blocks
#              (BatchNorm, ReLU, max-pool), a shared FC layer and task heads with dropout; BCE for gender,
#              class-weighted CE for race, range-normalised MAE for age, per-task loss weights; Adam lr 1e-4,
#              batch 32, 20 epochs; 70/15/15 split; 1-3% subsets for quick runs.
#   [fairface] Karkkainen & Joo 2021, "FairFace" (WACV): ResNet-34, ImageNet-pretrained, 224 px face crops.
# Demo profile: both models of notebook 08 on the 32 px FairFace demo twin (750 images) inside the notebook's
# 90 s on 2 CPU cores; [ours] Adam at 1e-4 barely moves in a few epochs there, 1e-3 learns every head.
MULTITASK_DEMO = {"epochs": 5, "lr": 1e-3, "pretrained": False}
MULTITASK_DEMO_BACKBONES = {"resnet34": "resnet18"}  # [ours] the same family at half the CPU time


@dataclass(frozen=True)
class MultiTaskRecipe:
    """Notebook 08: gender, race and age heads on one backbone (FairFace, or UTKFace through its mapping);
    ``helpers.multitask.build_model`` / ``build_loss`` turn it into a model and a ``MultiTaskLoss``."""

    backbone: str = "baseline"  # [seed08] the 4-block CNN; or any helpers.models.backbones name
    pretrained: bool = False  # [seed08] trained from scratch
    age_mode: str = "regression"  # [seed08] age regression (MAE); "classification": FairFace's 9 bins
    split: str = "stratified"  # [seed08] 70/15/15 by race x gender; "official": FairFace's own train/val
    fraction: float = 1.0  # [seed08] 0.01-0.03 for quick experiments
    image_size: int = 224  # [fairface] 224 px crops; [seed08] gives no size
    batch_size: int = 32  # [seed08]
    epochs: int = 20  # [seed08]
    optimizer: str = "adam"  # [seed08]
    lr: float = 1e-4  # [seed08]
    weight_decay: float = 0.0  # [seed08] mentions none
    scheduler: str = "none"  # [seed08] mentions none: a constant learning rate
    hidden: int = 256  # shared layer width; assumed ([seed08] "a shared layer", width not given)
    dropout: float = 0.3  # assumed ([seed08] "dropout layers", rate not given)
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # gender, race, age; [seed08] gives no values
    race_class_weights: bool = True  # [seed08] weighted cross-entropy for race imbalance
    augment: str = "fairface"  # helpers.transforms recipe; [seed08] flips, rotations, colour jitter, crops
    monitor: str = "val_loss"  # the weighted sum of the three task losses on the validation split
    amp: str = "auto"
    channels_last: bool = True
    seed: int = 0

    @classmethod
    def fairface_paper(cls) -> MultiTaskRecipe:
        """The stronger model: the FairFace paper's ImageNet-pretrained ResNet-34 [fairface], same heads."""
        return cls(backbone="resnet34", pretrained=True)

    def for_profile(self, profile: config.Profile | None = None) -> MultiTaskRecipe:
        """A copy sized for ``profile`` (default: the active one). The demo profile takes its image and batch
        sizes, swaps in ``MULTITASK_DEMO`` (no downloads, a higher LR for a few epochs) and the smaller
        backbone of ``MULTITASK_DEMO_BACKBONES``."""
        profile = profile or config.profile()
        sized = replace(self, image_size=profile.pick("image_size", self.image_size),
                        batch_size=profile.pick("batch_size", self.batch_size))
        if profile.demo:
            return replace(sized, backbone=MULTITASK_DEMO_BACKBONES.get(self.backbone, self.backbone),
                           **MULTITASK_DEMO)
        return replace(sized, epochs=profile.pick("epochs", self.epochs))

    def train_config(self, **overrides) -> engine.TrainConfig:
        """The engine's ``TrainConfig`` for this recipe; ``overrides`` replace any of its fields."""
        cfg = engine.TrainConfig(epochs=self.epochs, lr=self.lr, optimizer=self.optimizer,
                                 weight_decay=self.weight_decay, scheduler=self.scheduler, amp=self.amp,
                                 channels_last=self.channels_last, monitor=self.monitor, seed=self.seed)
        return replace(cfg, **overrides)


# Notebooks 04-06 sources:
#   [seed04]   CS 405 face-classification report (/work/shared/seeds/004_341cbf375c31999f.txt): 7,000
#              identities x 20 images (140,000 train, 35,000 test), 80/20 random split (random_split),
#              batch 64, train augmentation flip / rotation 10 / colour jitter 0.2 / random resized crop.
#              ResNet-50 (ImageNet, 224 px): Adam 1e-3, weight decay 1e-5, 17 epochs, dropout 0.5, label
#              smoothing 0.1, no layer frozen -> 53.97 / 51.76 / 51.91% train / val / test.
#              MobileNetV2 (ImageNet, 224 px): AdamW 5e-5, weight decay 1e-2, dropout 0.5, ReduceLROnPlateau
#              patience 2, 25 epochs, all frozen but the last 10 layers -> 60.54 / 57.24 / 56.74%.
#              InceptionResnetV1 (VGGFace2, 160 px in [-1, 1]): head [1024, 512] LeakyReLU + dropout 0.5,
#              Adam 1e-3 then 5e-4, ReduceLROnPlateau patience 2 min 1e-6, weight decay 1e-4, label
#              smoothing 0.1, 10 epochs, the first 3 frozen then the last 15 layers fine-tuned
#              -> 83.79 / 80.39 / 79.02% (Kaggle 0.79).
#   [finetune] Kornblith, Shlens & Le 2019, "Do Better ImageNet Models Transfer Better?" (CVPR): fine-tuning
#              works best at rates well below from-scratch ones; Howard & Ruder 2018 (ULMFiT): lower rates
#              for the pretrained body than for the new head, and a warm-up.
#   [assumed]  the seed does not give it; our choice.
# "Layer" in the freezing policies: a module owning parameters directly (conv, linear, norm...), in
# registration order; see helpers.models.backbones. The augmentation is the transforms recipe that belongs
# to the backbone (its ModelInfo), not the seed's exact list.
#
# Demo profile: random weights (no download in CI) on the 24-identity CS 405 twin (16 images each, 32 px
# unless the model needs more). [ours] on 1 CPU thread, 80/20 split, chance 4%: the seed's small rates barely
# move random weights and a frozen random body learns little (MobileNetV2, last 10 layers, 6 epochs: 9-12%),
# so the demos train at higher rates. resnet18 stands in for ResNet-50 (8 epochs in ~35 s CPU without
# dropout: seed recipe 43% at 1e-3, 52% at 3e-3; improved 16% at 1e-3, 44% at 3e-3; dropout 0.5 halves
# these; ResNet-50, 6 epochs: 16% in 49 s); MobileNetV2 trains all layers (10 epochs at 3e-3: 31% in 25 s);
# InceptionResnetV1 keeps the staged freezing at 80 px (2 + 4 epochs: 20% in 31 s).
RESNET50_DEMO = {"model": "resnet18", "epochs": 8, "lr": 3e-3, "dropout": 0.0, "backbone_lr_scale": 1.0}
MOBILENETV2_DEMO = {"epochs": 10, "lr": 3e-3, "freeze": "full", "dropout": 0.2, "scheduler": "cosine",
                    "warmup_epochs": 1, "monitor": "val_acc"}
INCEPTION_DEMO = {"image_size": 80, "epochs": 6, "frozen_epochs": 2, "lr": 3e-3, "lr_unfrozen": 1e-3}


@dataclass(frozen=True)
class TransferRecipe:
    """Fine-tuning a pretrained backbone (``helpers.models.backbones``) for identity classification; the
    notebooks' recipes below override the defaults. Training runs in stages (``stages()``): the head alone
    for ``frozen_epochs``, then under the ``freeze`` policy for the rest."""

    model: str = "resnet50"  # a backbones.create_model name
    pretrained: bool = True
    head: str | tuple[int, ...] = "linear"  # or hidden sizes of an MLP head
    dropout: float = 0.5  # [seed04] all three models
    image_size: int = 224  # [seed04] ResNet-50 and MobileNetV2
    batch_size: int = 64  # [seed04]
    epochs: int = 10
    optimizer: str = "adam"
    lr: float = 1e-3
    backbone_lr_scale: float = 1.0  # LR multiplier of the backbone's parameters (param group "backbone.")
    weight_decay: float = 0.0
    scheduler: str = "none"
    warmup_epochs: float = 0.0
    patience: int = 2  # "plateau" only
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    freeze: str | tuple[str, int] = "full"  # policy after the frozen epochs: "full", "head" or ("last", N)
    frozen_epochs: int = 0  # first epochs with the backbone frozen (head only)
    lr_unfrozen: float | None = None  # LR once the backbone trains (None: lr)
    val_fraction: float = 0.2  # [seed04] 80/20 split of train (CS 405; HW2P2 has its dev split)
    monitor: str = "val_acc"
    amp: str = "auto"
    channels_last: bool = True
    seed: int = 0

    def for_profile(self, profile: config.Profile | None = None) -> TransferRecipe:
        """A copy sized for ``profile`` (default: the active one). The demo profile takes its image and batch
        sizes, random weights and the recipe's ``DEMO`` values (see the notes above); other profiles override
        image size, batch and epochs where they set them, keeping at least one epoch after the frozen ones."""
        profile = profile or config.profile()
        sized = replace(self, image_size=profile.pick("image_size", self.image_size),
                        batch_size=profile.pick("batch_size", self.batch_size))
        if profile.demo:
            return replace(sized, pretrained=False, **self.demo_overrides())
        epochs = profile.pick("epochs", self.epochs)
        return replace(sized, epochs=epochs, frozen_epochs=min(self.frozen_epochs, epochs - 1))

    def demo_overrides(self) -> dict:
        """The values the demo profile replaces (see the notes above ``TransferRecipe``)."""
        return {}

    def build_model(self, num_classes: int, weights_file: str | None = None) -> backbones.FaceClassifier:
        """The backbone and head of this recipe (pretrained weights from the library or ``weights_file``)."""
        head = list(self.head) if isinstance(self.head, tuple) else self.head
        return backbones.create_model(self.model, num_classes, pretrained=self.pretrained,
                                      weights_file=weights_file, head=head, dropout=self.dropout)

    def stages(self) -> list[backbones.Stage]:
        """The training stages for ``backbones.fit_stages``: head alone first (if any), then ``freeze``."""
        frozen = [backbones.Stage(self.frozen_epochs, "head", self.lr)] if self.frozen_epochs else []
        rest = backbones.Stage(self.epochs - self.frozen_epochs, self.freeze, self.lr_unfrozen or self.lr)
        return [*frozen, rest]

    def train_config(self, **overrides) -> engine.TrainConfig:
        """The engine's ``TrainConfig`` for this recipe; ``overrides`` replace any of its fields."""
        groups = {"backbone.": self.backbone_lr_scale} if self.backbone_lr_scale != 1.0 else {}
        cfg = engine.TrainConfig(
            epochs=self.epochs, lr=self.lr, optimizer=self.optimizer, weight_decay=self.weight_decay,
            param_groups=groups, scheduler=self.scheduler, warmup_epochs=self.warmup_epochs,
            patience=self.patience, min_lr=self.min_lr, label_smoothing=self.label_smoothing,
            monitor=self.monitor, amp=self.amp, channels_last=self.channels_last, seed=self.seed)
        return replace(cfg, **overrides)


@dataclass(frozen=True)
class ResNet50Recipe(TransferRecipe):
    """Notebook 04: ImageNet ResNet-50, every layer trained. The defaults are the seed's recipe [seed04]
    (51.9% test); ``improved()`` is the one we recommend."""

    model: str = "torchvision/resnet50"  # [seed04] ImageNet ResNet-50 (25.6M); torchvision's, as in PyTorch
    dropout: float = 0.5  # [seed04]
    image_size: int = 224  # [seed04]
    epochs: int = 17  # [seed04]
    optimizer: str = "adam"  # [seed04] betas 0.9, 0.999
    lr: float = 1e-3  # [seed04]
    weight_decay: float = 1e-5  # [seed04] (Adam: L2 added to the gradient)
    scheduler: str = "none"  # [seed04] names none: constant rate
    label_smoothing: float = 0.1  # [seed04]
    freeze: str | tuple[str, int] = "full"  # [seed04] entire model trained

    def demo_overrides(self) -> dict:
        return RESNET50_DEMO

    @classmethod
    def improved(cls) -> ResNet50Recipe:
        """Why: the seed reached only 54% on its own *training* images, so it underfit rather than
        overfit. Adam at 1e-3 on every layer of a pretrained ResNet-50, driven by a fresh random 7,000-way
        head, rewrites the ImageNet features in the first steps; fine-tuning works at rates 10-100x lower for
        the body [finetune]. Changes: the body trains at 1e-4 (x0.1) while the new head keeps 1e-3; AdamW
        with decoupled weight decay 0.05 (not on norms and biases) instead of Adam's L2 1e-5; one warm-up
        epoch then cosine decay to 1e-6, so the head settles before the body moves much. Not measured on
        CS 405 here (no GPU run yet); the demo twin cannot tell the two apart (random weights)."""
        return cls(optimizer="adamw", lr=1e-3, backbone_lr_scale=0.1,  # [finetune] discriminative rates
                   weight_decay=0.05,  # [assumed] AdamW's usual value
                   scheduler="cosine", warmup_epochs=1, min_lr=1e-6)  # [finetune] warm-up; [assumed] cosine


@dataclass(frozen=True)
class MobileNetV2Recipe(TransferRecipe):
    """Notebook 05: ImageNet MobileNetV2, all frozen but the last 10 layers [seed04] (56.7% test)."""

    model: str = "torchvision/mobilenet_v2"  # [seed04] ImageNet MobileNetV2 (3.4M); torchvision's
    dropout: float = 0.5  # [seed04]
    image_size: int = 224  # [seed04]
    epochs: int = 25  # [seed04]
    optimizer: str = "adamw"  # [seed04]
    lr: float = 5e-5  # [seed04]
    weight_decay: float = 1e-2  # [seed04]
    scheduler: str = "plateau"  # [seed04] ReduceLROnPlateau
    patience: int = 2  # [seed04]
    monitor: str = "val_loss"  # [assumed] the plateau's metric (Keras' default); also picks best.pt
    label_smoothing: float = 0.0  # [seed04] names none for this model
    freeze: str | tuple[str, int] = ("last", 10)  # [seed04] the last 10 layers (here: 1.04M of 2.2M body)

    def demo_overrides(self) -> dict:
        return MOBILENETV2_DEMO


@dataclass(frozen=True)
class InceptionResnetV1Recipe(TransferRecipe):
    """Notebook 06: facenet-pytorch's InceptionResnetV1 pretrained on VGGFace2 with an MLP head; 3 epochs
    with the body frozen, then the last 15 layers fine-tuned [seed04] (79.0% on Kaggle)."""

    model: str = "facenet/vggface2"  # [seed04] VGGFace2 weights (facenet-pytorch)
    head: str | tuple[int, ...] = (1024, 512)  # [seed04] Dense [1024, 512] with LeakyReLU
    dropout: float = 0.5  # [seed04]
    image_size: int = 160  # [seed04] 160 px, scaled to [-1, 1] (the "facenet" transforms recipe)
    epochs: int = 10  # [seed04]
    frozen_epochs: int = 3  # [seed04] "first 3 frozen"
    freeze: str | tuple[str, int] = ("last", 15)  # [seed04] last 15 layers fine-tuned
    optimizer: str = "adam"  # [seed04] betas 0.9, 0.999
    lr: float = 1e-3  # [seed04] while frozen
    lr_unfrozen: float | None = 5e-4  # [seed04] "1e-3 -> 5e-4", read as the rate once layers unfreeze
    weight_decay: float = 1e-4  # [seed04]
    scheduler: str = "plateau"  # [seed04] ReduceLROnPlateau
    patience: int = 2  # [seed04]
    min_lr: float = 1e-6  # [seed04]
    monitor: str = "val_loss"  # [assumed] the plateau's metric (Keras' default); also picks best.pt
    label_smoothing: float = 0.1  # [seed04]

    def demo_overrides(self) -> dict:
        return INCEPTION_DEMO


# Notebook 07 sources:
#   [arcface]  Deng et al. 2019, "ArcFace" (arXiv:1801.07698), and insightface's arcface_torch configs and
#              train_v2.py: s=64, m=0.5, 512-d embedding from a BN-dropout-FC-BN layer (dropout 0), SGD lr 0.1,
#              momentum 0.9, weight decay 5e-4, batch 128 per GPU, gradient norm clipped at 5.
#   [seed00]   ConvNeXt + ArcFace report (/work/shared/seeds/000_7f2a1695d4af41c7.txt): a 512-d embedding head
#              with BatchNorm and dropout 0.4-0.5, ArcFace 64 / 0.5, separate rates for backbone and heads.
#   [seed01]   CMU 11-785 HW2P2 report (/work/shared/seeds/001_b073262f6853f38c.txt): unknown faces mapped to
#              a known identity or n000000 by cosine vs Euclidean similarity; 64.58% (cut-offs 63/60/50%).
#   [finetune] fine-tuning practice: a pretrained body at ~0.1x the rate of freshly initialised heads.
# Demo profile: the small convnext_atto from scratch at notebook 03's demo rate, 8 epochs, on the 24-identity
# twin. [ours] 32 px, 8 epochs, ArcFace model (dev = nearest-centre accuracy; AUC on the 40 val pairs):
# hw2p2 augmentation: dev 40%, rank-1 of known queries 10%, AUC 0.73 (too strong to learn in 8 epochs);
# light "imagenet" crop + flip: s=16 dev 81%, rank-1 60%, AUC 0.81; s=30 dev 78%, AUC 0.85; s=64 dev 70%,
# AUC 0.84; m=0.3 at s=16 as m=0.5. ~2.2 s per epoch per model on 2 uncontended cores.
ARCFACE_DEMO = {"backbone": "scratch/convnext_atto", "init_from": None, "epochs": 8, "lr": 4e-3,
                "warmup_epochs": 1, "drop_path_rate": 0.0, "backbone_lr_scale": 1.0, "s": 16.0,
                "augment": "imagenet"}


@dataclass(frozen=True)
class ArcFaceRecipe:
    """Notebook 07: ArcFace embeddings for open-set identification and pair verification, against a softmax
    classifier trained from the same start for the same epochs. In the full profile both start from notebook
    03's best checkpoint (when the results registry has one) and are fine-tuned; otherwise from scratch."""

    backbone: str = "scratch/convnext_tiny"  # notebook 03's network, so its checkpoint loads
    init_from: str | None = "03_convnext_from_scratch"  # registry notebook whose best.pt starts both models
    embedding_dim: int = 512  # [arcface] [seed00]
    dropout: float = 0.0  # [arcface] 0 in arcface_torch; [seed00] used 0.4-0.5 in its MLP head
    s: float = 64.0  # [arcface] [seed00]; for thousands of identities (HW2P2: 7,000)
    m: float = 0.5  # [arcface] [seed00] additive angular margin, radians
    easy_margin: bool = False  # [arcface] arcface_torch keeps the cos(theta) - m sin(m) fallback
    label_smoothing: float = 0.0  # [arcface] none (both models, so only the loss differs)
    image_size: int = 224  # [seed01] HW2P2 images are 224x224
    batch_size: int = 128  # [arcface] 128 per GPU
    epochs: int = 10  # [ours] a fine-tuning budget on top of notebook 03
    optimizer: str = "adamw"  # notebook 03's optimizer (ConvNeXt paper), continued
    lr: float = 1e-3  # [finetune] fresh heads; the body trains at lr * backbone_lr_scale
    backbone_lr_scale: float = 0.1  # [finetune] [seed00] separate rates; only applied when fine-tuning
    weight_decay: float = 0.05  # ConvNeXt paper (as notebook 03); [arcface] uses 5e-4 with SGD
    warmup_epochs: float = 1.0  # lets the fresh class centres settle before the body moves
    min_lr: float = 1e-6
    drop_path_rate: float = 0.1  # as notebook 03 (ConvNeXt-T)
    clip_grad_norm: float | None = 5.0  # [arcface] train_v2.py
    augment: str = "hw2p2"  # helpers.transforms recipe, as notebook 03
    amp: str = "auto"
    channels_last: bool = True
    monitor: str = "val_acc"  # dev accuracy (nearest class centre for ArcFace)
    gallery: str = "mean"  # "mean" embedding per known identity, or "best" image
    metric: str = "cosine"  # [seed01] cosine (or "euclidean") for the submissions
    flip_tta: bool = True  # embeddings averaged with the mirrored image
    seed: int = 0

    def for_profile(self, profile: config.Profile | None = None) -> ArcFaceRecipe:
        """A copy sized for ``profile`` (default: the active one): the demo profile takes its image and batch
        sizes and ``ARCFACE_DEMO`` (from scratch, small model, s=16); others override what they set."""
        profile = profile or config.profile()
        sized = replace(self, image_size=profile.pick("image_size", self.image_size),
                        batch_size=profile.pick("batch_size", self.batch_size))
        if profile.demo:
            return replace(sized, **ARCFACE_DEMO)
        return replace(sized, epochs=profile.pick("epochs", self.epochs))

    def init_run(self) -> dict | None:
        """``init_from``'s newest registry entry (this profile) whose ``best.pt`` still exists, as
        ``{"checkpoint", "model", "norm"}``; None (train from scratch) when there is none or no ``init_from``."""
        table = results.load(config.profile().name) if self.init_from else None
        if table is None or table.empty or "run_dir" not in table:
            return None
        for _, row in table[table["notebook"] == self.init_from].iloc[::-1].iterrows():
            if isinstance(row["run_dir"], str) and (Path(row["run_dir"]) / "best.pt").is_file():
                return {"checkpoint": Path(row["run_dir"]) / "best.pt", "model": row["settings.model"],
                        "norm": row.get("settings.norm", "layernorm")}
        return None

    def build_backbone(self, init: dict | None = None) -> tuple[nn.Module, backbones.ModelInfo]:
        """The backbone, random or with notebook 03's weights (its EMA weights when it kept them)."""
        if init is None:
            return backbones.create_backbone(self.backbone, drop_path_rate=self.drop_path_rate)
        backbone, info = backbones.create_backbone(f"scratch/{init['model']}", norm=init["norm"],
                                                   drop_path_rate=self.drop_path_rate)
        ckpt = engine.load_checkpoint(init["checkpoint"])
        weights = ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"]
        backbone.load_state_dict({k: v for k, v in weights.items() if not k.startswith("head.fc.")})
        return backbone, info

    def build_models(self, num_classes: int, init: dict | None = None,
                     ) -> tuple[backbones.FaceClassifier, losses.ArcFaceModel]:
        """``(softmax, arcface)``: the same starting backbone under a linear softmax head, and under the
        512-d embedding head with ArcFace's class centres."""
        config.seed_everything(self.seed)
        backbone, info = self.build_backbone(init)
        softmax = backbones.FaceClassifier(backbone, heads.LinearHead(backbone.num_features, num_classes), info)
        config.seed_everything(self.seed)
        backbone, _ = self.build_backbone(init)
        arcface = losses.ArcFaceModel(
            backbone, heads.EmbeddingHead(backbone.num_features, self.embedding_dim, self.dropout),
            losses.ArcFace(self.embedding_dim, num_classes, s=self.s, m=self.m, easy_margin=self.easy_margin,
                           label_smoothing=self.label_smoothing))
        return softmax, arcface

    def train_config(self, init: dict | None = None, **overrides) -> engine.TrainConfig:
        """The engine's ``TrainConfig``; the body trains at ``backbone_lr_scale`` only when fine-tuning."""
        groups = {"backbone.": self.backbone_lr_scale} if init is not None and self.backbone_lr_scale != 1 else {}
        cfg = engine.TrainConfig(
            epochs=self.epochs, lr=self.lr, optimizer=self.optimizer, weight_decay=self.weight_decay,
            param_groups=groups, scheduler="cosine", warmup_epochs=self.warmup_epochs, min_lr=self.min_lr,
            label_smoothing=self.label_smoothing, clip_grad_norm=self.clip_grad_norm, amp=self.amp,
            channels_last=self.channels_last, monitor=self.monitor, seed=self.seed)
        return replace(cfg, **overrides)
