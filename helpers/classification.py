"""The shared run of the identity-classification notebooks (03-06): splits, model, loaders, staged training
with resume, the best checkpoint, evaluation, the Kaggle CSV and the registry entry, in one call each.

The notebooks keep what each lesson teaches (its recipe and why, its freezing table, its curves); this module
keeps the part they share, so the evaluated and submitted weights are always the best checkpoint's.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from helpers import config, data, distributed, engine, metrics, recipes, results, submission
from helpers.datasets import FaceSet, holdout_split
from helpers.models import backbones, freezing
from helpers.recipes import Recipe


@dataclass
class Result:
    """What a classification run leaves: its folder, history, held-out scores and predictions, the CSV."""

    run_dir: Path
    history: pd.DataFrame
    metrics: dict[str, float]
    val_logits: torch.Tensor
    val_targets: torch.Tensor
    csv: Path | None
    entry: dict


def splits(faceset: FaceSet, recipe: Recipe) -> dict[str, pd.DataFrame]:
    """``train``/``val``/``test``: the dataset's own dev split as ``val`` (HW2P2), else ``recipe.val_fraction``
    of train held out per identity (CS 405's 80/20); ``test`` in submission order."""
    if "dev" in faceset.splits:
        train, val = faceset["train"], faceset["dev"]
    else:
        train, val = holdout_split(faceset["train"], recipe.val_fraction, by="label", seed=recipe.train.seed)
    return {"train": train, "val": val, "test": submission.test_frame(faceset)}


def build_model(recipe: Recipe, num_classes: int, weights_file: str | None = None) -> backbones.FaceClassifier:
    """The recipe's backbone (a ``helpers.models.backbones`` name) and head; our scratch ConvNeXt
    (``scratch/...``, notebook 03) also takes the recipe's norm and drop-path rate."""
    extra = {k: recipe.spec[k] for k in ("drop_path_rate", "norm") if k in recipe.spec}
    head = list(recipe.head) if isinstance(recipe.head, tuple) else recipe.head
    return backbones.create_model(recipe.model, num_classes, pretrained=recipe.pretrained, weights_file=weights_file,
                                  head=head, dropout=recipe.dropout, **extra)


def loaders(parts: dict[str, pd.DataFrame], recipe: Recipe, model: backbones.FaceClassifier,
            num_classes: int) -> dict:
    """One loader per split with the model's normalisation, on the recipe's input pipeline (CPU, or packed
    JPEGs augmented on the GPU); MixUp/CutMix on train when the recipe asks."""
    return data.make_loaders(parts, recipe.augment, recipe.image_size, recipe.batch_size, norm=model.info.norm,
                             num_workers=recipe.num_workers, seed=recipe.train.seed, num_classes=num_classes,
                             mixup=(recipe.mixup_alpha, recipe.cutmix_alpha), pipeline=recipe.pipeline)


def freezing_table(model: backbones.FaceClassifier, recipe: Recipe) -> pd.DataFrame:
    """Per stage of the recipe: epochs, rate and what trains (parameters and backbone layers)."""
    rows = [{"stage": stage.name, "epochs": stage.epochs, "lr": stage.overrides.get("lr", recipe.train.lr),
             **freezing.freeze(model, stage.freeze, stage.trainable)} for stage in recipes.stages(recipe)]
    return pd.DataFrame(rows)


def fit(model: backbones.FaceClassifier, recipe: Recipe, batches: dict, run_dir: Path,
        resume: bool = False) -> pd.DataFrame:
    """Train by the recipe's stages (``fit_stages``: the model ends on the best checkpoint of the run)."""
    return engine.fit_stages(model, batches["train"], batches["val"], recipe.train, run_dir, recipes.stages(recipe),
                             resume=resume, meta=recipe.record())


def run(notebook: str, model: backbones.FaceClassifier, recipe: Recipe, faceset: FaceSet,
        resume: str | Path | None = None, submit: bool = False, devices: int | None = None) -> Result:
    """Train ``model`` by the recipe's stages in a new run folder (or continue ``resume``), on ``devices`` GPUs
    (data-parallel through accelerate when more than one), restore the best checkpoint, score it on the
    validation split (top-1/top-5), write the Kaggle CSV from it (sent only when ``submit``) and record the
    run in the registry."""
    parts = splits(faceset, recipe)
    num_classes = len(faceset.classes)
    batches = loaders(parts, recipe, model, num_classes)
    run_dir, resuming = config.open_run(notebook, resume)
    print(f"run folder: {run_dir}" + (" (resumed)" if resuming else ""))
    start = time.perf_counter()
    distributed.launch(fit, (model, recipe, batches, run_dir, resuming), devices)
    seconds = time.perf_counter() - start
    engine.load_checkpoint(run_dir / "best.pt", model)  # the best weights, wherever training ran
    history = pd.read_csv(run_dir / "history.csv")
    logits, targets = engine.predict(model, batches["val"], return_targets=True, amp=recipe.train.amp)
    top = metrics.topk_accuracy(logits, targets, k=(1, 5))
    scores = {"val_acc": top[1], "val_top5": top[5], "best_val_acc": float(history["val_acc"].max()),
              "chance": 1 / num_classes}
    if abs(scores["val_acc"] - scores["best_val_acc"]) > 1 / len(targets):
        warnings.warn(f"The restored checkpoint scores {scores['val_acc']:.4f} on validation but the best epoch "
                      f"recorded {scores['best_val_acc']:.4f}: {run_dir / 'best.pt'} is not the best epoch's.",
                      stacklevel=2)
    test = engine.predict(model, batches["test"], amp=recipe.train.amp).argmax(1)
    csv = submission.write_classification(faceset, parts["test"]["id"], test, config.submissions_dir())
    submission.maybe_submit(csv, submission.CLASSIFICATION_SLUGS[faceset.name],
                            f"{notebook} {recipe.model} ({recipe.variant})", submit)
    timing = {"train_images_per_s": float(history["train_images_per_s"].median()), "train_seconds": seconds,
              "epochs": len(history), "devices": devices or 1,
              "parameters": freezing.summary(model, recipe.image_size)["parameters"]}
    entry = results.record(notebook, recipe.model, scores, settings={"dataset": faceset.name, **recipe.record()},
                           timing=timing, run_dir=run_dir)
    return Result(run_dir, history, scores, logits, targets, csv, entry)
