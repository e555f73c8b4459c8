"""RandAugment + MixUp on Adience gender, measured right and measured the way the seed report did.

The seed added both to its pipeline and read about 47% on its training, validation and test sets alike, having
augmented all three. Done right, only training batches are augmented and mixed, MixUp's soft targets train with
the matching soft-target cross-entropy, and validation and test images stay clean with their hard labels. The
seed's way, reproduced here on purpose, scores the same weights on augmented images mixed in pairs, counting a
hit when the prediction is the larger share of the mixed label (categorical accuracy on MixUp labels).

Rows to compare: the clean accuracies (what the network learned), the augmented-and-mixed ones (what such a
table measures) and a network that always answers one class (the share of that class): a score near the share
of one gender on *every* split, training included, is the signature of a network that predicts one class.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from helpers import adience, data, engine, transforms
from helpers.datasets import FaceDataset, make_loader
from helpers.recipes import Recipe

SPLITS = ("train", "val", "test")
GENDER = ("gender",)
BASELINE = "recipe augmentation, clean splits"
RIGHT = "RandAugment + MixUp on training batches only, clean splits"
SEED_WAY = "same weights, every split augmented and mixed (the seed's way)"


def mixed_loader(frame: pd.DataFrame, recipe: Recipe, norm: str) -> DataLoader:
    """An evaluation loader the seed's way: every image through the training augmentation
    (``recipe.ablation_augment``), every batch mixed by MixUp (``recipe.ablation_mixup_alpha``, soft labels)."""
    dataset = FaceDataset(frame, transforms.build(recipe.ablation_augment, recipe.image_size, True, norm), "gender")
    return make_loader(dataset, recipe.batch_size, shuffle=False, num_workers=recipe.num_workers,
                       collate_fn=transforms.MixCollate(len(adience.TASKS["gender"]), recipe.ablation_mixup_alpha, 0.0))


def accuracies(model: nn.Module, parts: Mapping[str, pd.DataFrame], recipe: Recipe, norm: str,
               mixed: bool = False) -> dict[str, float]:
    """Gender accuracy of ``model`` on each split: clean images and hard labels, or (``mixed``) augmented and
    mixed the seed's way (the random draws seeded by ``recipe.train.seed``)."""
    scores = {}
    with torch.random.fork_rng():  # CPU and CUDA generators restored afterwards
        torch.manual_seed(recipe.train.seed)
        for split in SPLITS:
            loader = (mixed_loader(parts[split], recipe, norm) if mixed else
                      data.loader(parts[split], recipe.image_size, recipe.batch_size, False, target="gender",
                                  norm=norm, num_workers=recipe.num_workers))
            scores[split] = engine.evaluate(model, loader)["acc"]
    return scores


def run(recipe: Recipe, parts: Mapping[str, pd.DataFrame], run_dir: Path, resume: bool = False,
        baseline: Path | None = None) -> pd.DataFrame:
    """Train gender with RandAugment + MixUp on ``parts["train"]`` only (checkpoint picked on the clean
    validation split) in ``run_dir``, then score it both ways. With ``baseline`` (the ``best.pt`` of the same
    split trained with the recipe's own augmentation) that model is scored too. Rows: train/val/test accuracy
    of each, and of always answering male or female."""
    augmented = recipe.with_values(augment=recipe.ablation_augment)
    model, info = adience.build_model(augmented, GENDER)
    adience.fit(model, info, augmented, parts, GENDER, run_dir, resume, mixup=(recipe.ablation_mixup_alpha, 0.0))
    rows = {}
    if baseline is not None and Path(baseline).is_file():
        rows[BASELINE] = accuracies(
            adience.load_model(recipe, GENDER, baseline), parts, recipe, info.norm)
    rows[RIGHT] = accuracies(model, parts, recipe, info.norm)
    rows[SEED_WAY] = accuracies(
        model, parts, recipe, info.norm, mixed=True)
    for code, name in enumerate(("male", "female")):
        rows[f"always {name}"] = {split: float((parts[split]["gender"] == code).mean()) for split in SPLITS}
    return pd.DataFrame(rows).T


def summary(table: pd.DataFrame) -> dict[str, float]:
    """The ablation's test accuracies for a results registry: baseline (when scored), done right, the seed's way."""
    names = {BASELINE: "augment_baseline_test_acc", RIGHT: "augment_test_acc", SEED_WAY: "augment_seed_way_test_acc"}
    return {key: float(table.loc[row, "test"]) for row, key in names.items() if row in table.index}
