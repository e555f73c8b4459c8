"""The Adience protocol of notebook 10: gender and age group on the five official folds.

Each official fold holds its own subjects (``user_id``), so training on four folds and testing on the fifth never
shows a test subject in training. Model selection needs a validation split too: it comes from the training
folds, a share of their *subjects* held out (:func:`split`), never from the test fold. Every run reports the
mean and standard deviation over the test folds.

Tasks: ``gender`` (0 male, 1 female: Adience's ``m, f`` order) and ``age`` (the 8 regular groups, exact and
one-off accuracy: a prediction one group away counts). Experiments (:data:`EXPERIMENTS`): gender trained
directly from ImageNet weights, gender after a CelebA gender stage (its ``Male`` attribute), gender + age on one
shared network (hard parameter sharing: ``helpers.models.multitask.MultiTaskModel`` without a race head), and
age alone.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import GroupShuffleSplit
from torch import nn

from helpers import config, data, engine, metrics, search
from helpers import results as registry
from helpers.checkpoint import load_checkpoint
from helpers.datasets import FaceSet
from helpers.datasets.constants import ADIENCE_AGES, ADIENCE_FOLDS, ADIENCE_GENDERS
from helpers.losses import MultiTaskLoss
from helpers.models import backbones, freezing
from helpers.models.backbones import ModelInfo
from helpers.models.multitask import MultiTaskModel
from helpers.recipes import Recipe

NOTEBOOK = "10_adience_transfer"
TASKS = {"gender": tuple(ADIENCE_GENDERS), "age": tuple(ADIENCE_AGES)}  # task -> class names, index order
SUBJECT = "user_id"


@dataclass(frozen=True)
class Experiment:
    """One arm of the cross-validation: its tasks, whether it starts from the CelebA gender model, and the
    history column that picks its checkpoint."""

    name: str
    tasks: tuple[str, ...]
    description: str
    pretrained_on_celeba: bool = False

    @property
    def monitor(self) -> str:
        return "val_acc" if len(self.tasks) == 1 else "val_loss"


EXPERIMENTS = {
    "direct": Experiment("direct", ("gender",), "gender: ImageNet weights, then Adience"),
    "celeba": Experiment("celeba", ("gender",), "gender: ImageNet, then CelebA Male, then Adience", True),
    "multitask": Experiment("multitask", ("gender", "age"), "gender + 8 age groups on one shared network"),
    "age": Experiment("age", ("age",), "8 age groups alone"),
}

# Test accuracies (%) on Adience: the seed report and the literature on the 5-fold protocol.
LITERATURE = pd.DataFrame(
    [("seed: ResNet-50, direct", 92.46, None, None), ("seed: Inception-v3, direct", 92.46, None, None),
     ("seed: Inception-ResNet-v2, direct", 94.51, None, None), ("seed: ViT-L/32, direct", 55.2, None, None),
     ("seed: ResNet-50, CelebA first", 91.49, None, None), ("seed: Inception-v3, CelebA first", 93.66, None, None),
     ("seed: Inception-ResNet-v2, CelebA first", 95.09, None, None),
     ("seed: ViT-L/32, CelebA first", 82.34, None, None), ("seed: Inception-v3, age alone", None, 73.37, None),
     ("seed: Inception-v3 multi-task", 95.95, 70.31, None),
     ("seed: Inception-v3, RandAugment + MixUp", 46.8, None, None),
     ("Levi & Hassner 2015 (5 folds)", 86.8, 50.7, None),
     ("VGG-16, ImageNet + IMDB-WIKI (5 folds)", 92.3, 63.0, 96.0)],
    columns=["model", "gender_acc", "age_acc", "age_one_off"]).set_index("model")


# ------------------------------------------------------------------------------------------------- data

def targets(frame: pd.DataFrame) -> pd.DataFrame:
    """A reader's fold as ``[path, user_id, fold, gender, age]`` with integer labels (gender 0 m / 1 f, age
    0..7), the columns the loaders and metrics read."""
    return pd.DataFrame({"path": frame["path"].to_numpy(), SUBJECT: frame[SUBJECT].to_numpy(),
                         "fold": frame["fold"].to_numpy(), "gender": frame["gender_idx"].to_numpy(),
                         "age": frame["age_idx"].to_numpy()}, index=frame.index)


def fold_table(faceset: FaceSet) -> pd.DataFrame:
    """Images, subjects, female share and images per age group of each official fold."""
    rows = {}
    for name, frame in faceset.splits.items():
        ages = np.bincount(frame["age_idx"], minlength=len(ADIENCE_AGES))
        rows[name] = {"images": len(frame), "subjects": frame[SUBJECT].nunique(),
                      "female share": round(float(frame["gender_idx"].mean()), 3),
                      **dict(zip(ADIENCE_AGES, ages.tolist(), strict=True))}
    return pd.DataFrame(rows).T


def shared_subjects(parts: Mapping[str, pd.DataFrame]) -> dict[tuple[str, str], list[str]]:
    """Subjects found in two parts at once, per pair of parts (empty when every part has its own)."""
    names = list(parts)
    found = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = sorted(set(parts[a][SUBJECT]) & set(parts[b][SUBJECT]))
            if both:
                found[(a, b)] = both
    return found


def check_disjoint(parts: Mapping[str, pd.DataFrame]) -> None:
    """Raise ``ValueError`` when a subject sits in two parts (a face seen in training would flatter the test)."""
    if shared := shared_subjects(parts):
        detail = "; ".join(f"{a} and {b}: {len(s)} subject(s), e.g. {s[:3]}" for (a, b), s in shared.items())
        raise ValueError(f"Subjects straddle parts ({detail}). Adience's official folds are subject-disjoint; "
                         "split by user_id (adience.split), never by image.")


def folds_of(folds: int | Sequence[int]) -> list[int]:
    """The test folds to run: ``n`` -> folds 0..n-1, or an explicit list such as ``[2, 4]``."""
    chosen = list(range(folds)) if isinstance(folds, int) else [int(k) for k in folds]
    if not chosen or any(not 0 <= k < ADIENCE_FOLDS for k in chosen) or len(set(chosen)) != len(chosen):
        raise ValueError(f"FOLDS={folds!r}: give a count 1..{ADIENCE_FOLDS} or distinct fold numbers 0..4.")
    return chosen


def subject_split(frame: pd.DataFrame, fraction: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rest, held_out)``: about ``fraction`` of the subjects (all their images) held out."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}.")
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    rest, held = next(splitter.split(frame, groups=frame[SUBJECT].to_numpy()))
    return frame.iloc[np.sort(rest)], frame.iloc[np.sort(held)]


def split(faceset: FaceSet, test_fold: int, val_fraction: float, seed: int = 0) -> dict[str, pd.DataFrame]:
    """``train``/``val``/``test`` for one test fold: the fold itself is ``test``; the other four are split by
    subject into ``train`` and ``val`` (``val_fraction`` of their subjects). Checked subject-disjoint."""
    frames = {k: targets(frame) for k, frame in faceset.splits.items()}
    test = frames.pop(f"fold_{test_fold}")
    train, val = subject_split(pd.concat(frames.values()), val_fraction, seed)
    parts = {"train": train, "val": val, "test": test}
    check_disjoint(parts)
    return parts


def split_table(parts: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Images, subjects and female share per part, with the subjects each part shares with the others (0)."""
    shared = shared_subjects(parts)
    return pd.DataFrame({name: {"images": len(frame), "subjects": frame[SUBJECT].nunique(),
                                "female share": round(float(frame["gender"].mean()), 3),
                                "subjects shared": sum(len(s) for pair, s in shared.items() if name in pair)}
                         for name, frame in parts.items()}).T


def celeba_frames(faceset: FaceSet, fraction: float = 1.0, seed: int = 0) -> dict[str, pd.DataFrame]:
    """CelebA's train and valid partitions as ``[path, gender]`` in Adience's order (0 male, 1 female, from the
    ``Male`` attribute), ``fraction`` of the training images kept (seeded)."""
    def convert(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"path": frame["path"].to_numpy(), "gender": 1 - frame["Male"].to_numpy()})
    train = convert(faceset["train"])
    if fraction < 1:
        train = train.sample(frac=fraction, random_state=seed).sort_index()
    return {"train": train, "val": convert(faceset["valid"])}


# ------------------------------------------------------------------------------------------------ models

def build_model(recipe: Recipe, tasks: Sequence[str]) -> tuple[nn.Module, ModelInfo]:
    """The recipe's backbone and head for ``tasks``, with its ``ModelInfo``: one task -> a
    ``FaceClassifier`` (the [1024, 512] MLP head); gender + age -> a ``MultiTaskModel`` whose shared layers
    have the same widths and whose only task-specific layers are the two output layers. The recipe's freezing
    policy is applied. Seeded by ``recipe.train.seed``: an experiment's initial weights do not depend on what
    ran before it in the notebook."""
    config.seed_everything(recipe.train.seed)
    kwargs = dict(recipe.model_kwargs)
    if len(tasks) == 1:
        model = backbones.create_model(recipe.model, len(TASKS[tasks[0]]), recipe.pretrained, head=list(recipe.head),
                                       dropout=recipe.dropout, **kwargs)
        info = model.info
    else:
        if set(tasks) != set(TASKS):
            raise ValueError(f"Multi-task Adience models predict {sorted(TASKS)}, got {list(tasks)}.")
        trunk, info = backbones.create_backbone(recipe.model, recipe.pretrained, **kwargs)
        model = MultiTaskModel(trunk, None, "classification", hidden=tuple(recipe.head), dropout=recipe.dropout,
                               num_age_bins=len(ADIENCE_AGES))
    freezing.freeze(model, recipe.freeze)
    return model, info


def load_model(recipe: Recipe, tasks: Sequence[str], checkpoint: str | Path) -> nn.Module:
    """A model of :func:`build_model` with the weights of a run's ``best.pt`` (no pretrained download)."""
    model, _ = build_model(recipe.with_values(pretrained=False), tasks)
    load_checkpoint(checkpoint, model)
    return model.to(config.device())


def train_config(recipe: Recipe, monitor: str = "val_acc", epochs: int | None = None) -> engine.TrainConfig:
    """The recipe's ``TrainConfig`` with the backbone at ``lr * backbone_lr_scale`` and the given monitor."""
    groups = {"backbone.": recipe.backbone_lr_scale} if recipe.backbone_lr_scale != 1.0 else {}
    return replace(recipe.train, monitor=monitor, param_groups=groups, epochs=epochs or recipe.train.epochs)


def loss_fn(recipe: Recipe, tasks: Sequence[str]) -> MultiTaskLoss | None:
    """None (the engine's cross-entropy, which also takes MixUp's soft targets) for one task; the weighted
    sum of the gender and age cross-entropies for both."""
    if len(tasks) == 1:
        return None
    return MultiTaskLoss(dict(zip(TASKS, recipe.loss_weights, strict=True)), age_mode="classification",
                         label_smoothing=recipe.train.label_smoothing, tasks=tuple(TASKS))


def loaders(parts: Mapping[str, pd.DataFrame], recipe: Recipe, norm: str, tasks: Sequence[str],
            mixup: tuple[float, float] = (0.0, 0.0)) -> dict:
    """``data.make_loaders`` with the task columns as targets (one column, or a dict for two); ``mixup``: the
    MixUp and CutMix alphas of the training batches (one task only)."""
    target = tasks[0] if len(tasks) == 1 else list(tasks)
    return data.make_loaders(parts, recipe.augment, recipe.image_size, recipe.batch_size, target=target, norm=norm,
                             num_workers=recipe.num_workers, seed=recipe.train.seed, mixup=mixup,
                             num_classes=len(TASKS[tasks[0]]), pipeline=recipe.pipeline)


# ----------------------------------------------------------------------------------------------- metrics

def _by_task(values, tasks: Sequence[str]) -> dict[str, torch.Tensor]:
    return dict(values) if isinstance(values, Mapping) else {tasks[0]: values}


def prediction_table(outputs, targets_, tasks: Sequence[str]) -> pd.DataFrame:
    """True ``<task>`` and predicted ``pred_<task>`` per image (plus ``p_female`` for gender)."""
    outputs, targets_ = _by_task(outputs, tasks), _by_task(targets_, tasks)
    frame = pd.DataFrame({task: targets_[task].numpy() for task in tasks})
    for task in tasks:
        frame[f"pred_{task}"] = outputs[task].argmax(1).numpy()
    if "gender" in tasks:
        frame["p_female"] = torch.softmax(outputs["gender"].float(), 1)[:, 1].numpy()
    return frame


def task_metrics(pred: pd.DataFrame) -> dict[str, float]:
    """Gender accuracy, age exact and one-off accuracy, for the tasks ``pred`` holds."""
    scores = {}
    if "gender" in pred:
        scores["gender_acc"] = metrics.accuracy(pred["pred_gender"], pred["gender"])
    if "age" in pred:
        scores["age_acc"] = metrics.accuracy(pred["pred_age"], pred["age"])
        scores["age_one_off"] = metrics.one_off_accuracy(pred["age"], pred["pred_age"])
    return scores


def metrics_fn(tasks: Sequence[str]) -> Callable[[object, object], dict[str, float]]:
    """For ``engine.fit``: the task metrics of each validation pass as ``val_<metric>`` columns."""
    def compute(outputs, targets_) -> dict[str, float]:
        return {f"val_{k}": v for k, v in task_metrics(prediction_table(outputs, targets_, tasks)).items()}
    return compute


def predict(model: nn.Module, loader, tasks: Sequence[str]) -> pd.DataFrame:
    """:func:`prediction_table` of an evaluation loader, with each image's path and subject."""
    outputs, targets_ = engine.predict(model, loader, return_targets=True, progress=False)
    frame = prediction_table(outputs, targets_, tasks)
    return pd.concat([loader.dataset.frame[["path", SUBJECT]].reset_index(drop=True), frame], axis=1)


def references(parts: Mapping[str, pd.DataFrame]) -> dict[str, float]:
    """Scores without a model on ``test``: uniform guessing (``chance_*``) and the training split's majority
    class (``majority_*``; for gender, what a network that always answers one class scores)."""
    train, test = parts["train"], parts["test"]
    groups = len(ADIENCE_AGES)
    near = np.minimum(test["age"] + 1, groups - 1) - np.maximum(test["age"] - 1, 0) + 1
    top_age = np.full(len(test), train["age"].mode().iloc[0])
    return {"chance_gender_acc": 0.5, "chance_age_acc": 1 / groups, "chance_age_one_off": float(np.mean(near / groups)),
            "majority_gender_acc": float((test["gender"] == train["gender"].mode().iloc[0]).mean()),
            "majority_age_acc": metrics.accuracy(top_age, test["age"]),
            "majority_age_one_off": metrics.one_off_accuracy(test["age"], top_age)}


# ------------------------------------------------------------------------------------------------ training

def fit(model: nn.Module, info: ModelInfo, recipe: Recipe, parts: Mapping[str, pd.DataFrame],
        tasks: Sequence[str], run_dir: Path, resume: bool = False, monitor: str = "val_acc",
        epochs: int | None = None, mixup: tuple[float, float] = (0.0, 0.0),
        on_epoch: Callable[[dict], None] | None = None) -> tuple[pd.DataFrame, dict]:
    """Train on ``parts["train"]`` (``mixup``: MixUp/CutMix alphas), pick the checkpoint on ``parts["val"]``
    (``engine.fit_best``: ``model`` ends on the best weights); returns the history and the loaders."""
    batches = loaders(parts, recipe, info.norm, tasks, mixup)
    history = engine.fit_best(model, batches["train"], batches["val"], train_config(recipe, monitor, epochs),
                              run_dir, resume, loss_fn=loss_fn(recipe, tasks), metrics_fn=metrics_fn(tasks),
                              meta={**recipe.record(), "tasks": list(tasks)}, on_epoch=on_epoch)
    return history, batches


def pretrain_celeba(recipe: Recipe, run_dir: Path, resume: bool = False) -> tuple[Path | None, pd.DataFrame]:
    """The CelebA gender stage (``recipe.celeba_epochs`` on its train partition, checkpoint picked on its
    valid partition) in ``run_dir/celeba``: the path of its ``best.pt`` and its history; ``(None, empty)``
    when ``recipe.pretrain_celeba`` is off."""
    if not recipe.pretrain_celeba:
        print("PRETRAIN_CELEBA is off: the 'celeba' experiment is skipped.")
        return None, pd.DataFrame()
    frames = celeba_frames(data.load("celeba"), recipe.celeba_fraction, recipe.train.seed)
    model, info = build_model(recipe, ("gender",))
    history, _ = fit(model, info, recipe, frames, ("gender",), run_dir / "celeba", resume,
                     epochs=recipe.celeba_epochs)
    return run_dir / "celeba" / "best.pt", history


@dataclass
class FoldResult:
    """One test fold of one experiment: its history, test metrics, the references without a model
    (:func:`references`), per-image predictions, the model's size and its run folder."""

    fold: int
    history: pd.DataFrame
    metrics: dict[str, float]
    references: dict[str, float]
    predictions: pd.DataFrame
    parameters: int
    run_dir: Path


def run_fold(experiment: Experiment, recipe: Recipe, parts: Mapping[str, pd.DataFrame], run_dir: Path,
             resume: bool = False, init: Path | None = None) -> FoldResult:
    """Train one experiment on one split (from ``init``'s weights when given) and score its test fold."""
    model, info = build_model(recipe, experiment.tasks)
    if init is not None:
        load_checkpoint(init, model)
    history, batches = fit(model, info, recipe, parts, experiment.tasks, run_dir, resume, experiment.monitor)
    pred = predict(model, batches["test"], experiment.tasks)
    return FoldResult(int(parts["test"]["fold"].iloc[0]), history, task_metrics(pred), references(parts), pred,
                      sum(p.numel() for p in model.parameters()), run_dir)


def cross_validate(recipe: Recipe, faceset: FaceSet, run_dir: Path, resume: bool = False,
                   celeba: Path | None = None) -> dict[str, list[FoldResult]]:
    """Every experiment of ``recipe.experiments`` on every fold of ``recipe.folds`` (``run_dir/<experiment>/
    fold_<k>``); the CelebA one only with ``celeba`` (the pre-trained ``best.pt``). ``resume`` continues."""
    results = {}
    for name in recipe.experiments:
        experiment = EXPERIMENTS[name]
        if experiment.pretrained_on_celeba and celeba is None:
            continue
        results[name] = [run_fold(experiment, recipe, split(faceset, k, recipe.val_fraction, recipe.train.seed),
                                  run_dir / name / f"fold_{k}", resume, celeba if experiment.pretrained_on_celeba
                                  else None) for k in folds_of(recipe.folds)]
    return results


def fold_scores(results: Mapping[str, list[FoldResult]]) -> pd.DataFrame:
    """Test metrics per experiment and fold."""
    return pd.DataFrame([{"experiment": name, "fold": r.fold, **r.metrics} for name, runs in results.items()
                         for r in runs]).set_index(["experiment", "fold"])


def summary(results: Mapping[str, list[FoldResult]]) -> pd.DataFrame:
    """Mean and standard deviation (``<metric>_std``, over folds) of each experiment's test metrics."""
    scores = fold_scores(results).groupby(level="experiment", sort=False)
    mean, std = scores.mean(), scores.std(ddof=0).add_suffix("_std")
    table = pd.concat([mean, std], axis=1)
    columns = [c for m in mean.columns for c in (m, f"{m}_std")]
    return table[columns].assign(folds=scores.size())


def formatted(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`summary` as ``"mean ± std"`` percentages."""
    metrics_ = [c for c in table.columns if not c.endswith("_std") and c != "folds"]
    return pd.DataFrame({m: [f"{100 * a:.1f} ± {100 * b:.1f}" if pd.notna(a) else "" for a, b in
                             zip(table[m], table[f"{m}_std"], strict=True)] for m in metrics_}, index=table.index)


def pooled_predictions(runs: Sequence[FoldResult]) -> pd.DataFrame:
    """Every test fold's predictions of one experiment, one row per image (for confusion matrices)."""
    return pd.concat([r.predictions.assign(fold=r.fold) for r in runs], ignore_index=True)


def registry_metrics(results: Mapping[str, list[FoldResult]]) -> dict[str, float]:
    """Flat metrics for the results registry: ``<experiment>_<metric>[_std]``, the headline ``gender_acc``
    (from ``direct``, else the first gender experiment) and ``age_acc``/``age_one_off`` (from ``age``, else
    the first age experiment), with their stds, and the references averaged over the test folds."""
    table = summary(results)
    runs = next(iter(results.values()))
    refs = pd.DataFrame([r.references for r in runs]).mean().to_dict()
    flat = {f"{name}_{column}": float(value) for name, row in table.drop(columns="folds").iterrows()
            for column, value in row.items() if pd.notna(value)}
    for metric, preferred in (("gender_acc", "direct"), ("age_acc", "age"), ("age_one_off", "age")):
        names = [preferred, *table.index] if preferred in table.index else list(table.index)
        source = next((n for n in names if f"{n}_{metric}" in flat), None)
        if source is not None:
            flat.update({metric: flat[f"{source}_{metric}"], f"{metric}_std": flat[f"{source}_{metric}_std"]})
    return {**flat, **refs}


def record(recipe: Recipe, results: Mapping[str, list[FoldResult]], extra: Mapping[str, float] | None = None,
           search_fold: int | None = None) -> dict:
    """Append the cross-validation to the results registry: :func:`registry_metrics` and ``extra`` (the search's
    and the ablation's figures), timed over all experiments. The entry's model, settings and run folder are the
    first fold of ``direct`` (else of the first single-task experiment): notebook 11 loads its ``best.pt``.

    ``search_fold``: the test fold whose training folds the search ran on; the other folds' test images took
    part in choosing the settings, so that fold's own score is recorded apart as ``<metric>_search_fold``."""
    single = [n for n in results if len(EXPERIMENTS[n].tasks) == 1]
    name = "direct" if "direct" in results else (single or list(results))[0]
    runs, task = results[name], EXPERIMENTS[name].tasks[0]
    histories = pd.concat([r.history for r in runs])
    settings = {**recipe.record(), "dataset": "adience", "experiment": name, "target": f"{task}_idx",
                "class_names": list(TASKS[task]), "eval_split": f"fold_{runs[0].fold}",
                "folds": [r.fold for r in runs], "experiments": list(results), "search_fold": search_fold}
    clean = {f"{metric}_search_fold": value for r in runs if r.fold == search_fold
             for metric, value in r.metrics.items() if metric == f"{task}_acc"}
    timing = {"train_seconds": float(histories["time_s"].sum()), "epochs": len(histories),
              "train_images_per_s": float(histories["train_images_per_s"].median()), "parameters": runs[0].parameters,
              "all_experiments_seconds": float(sum(r.history["time_s"].sum() for rs in results.values() for r in rs))}
    return registry.record(NOTEBOOK, recipe.model, {**registry_metrics(results), **clean, **dict(extra or {})},
                           settings, timing, runs[0].run_dir)


# ------------------------------------------------------------------------------------------------ search

def search_values(params: Mapping[str, float]) -> dict:
    """A trial's parameters as recipe values: ``head_units`` u -> head ``(u, u // 2)`` (the seed's 1024 ->
    512 shape), the others unchanged."""
    values = {k: v for k, v in params.items() if k != "head_units"}
    if "head_units" in params:
        values["head"] = (int(params["head_units"]), int(params["head_units"]) // 2)
    return values


def objective(recipe: Recipe, parts: Mapping[str, pd.DataFrame], run_dir: Path) -> Callable:
    """Optuna's objective: one gender model per trial with the trial's values of ``recipe.search_space``,
    ``recipe.search_epochs`` at most, scored by its best validation accuracy; each epoch is reported to the
    pruner (Hyperband stops the weak ones early). The test fold is never read."""
    def run(trial) -> float:
        trial_recipe = recipe.with_values(**search_values(search.suggest(trial, recipe.search_space)))
        model, info = build_model(trial_recipe, ("gender",))
        history, _ = fit(model, info, trial_recipe, {"train": parts["train"], "val": parts["val"]}, ("gender",),
                         run_dir / f"trial_{trial.number}", epochs=recipe.search_epochs,
                         on_epoch=search.reporter(trial, "val_acc"))
        return float(history["val_acc"].max())
    return run


def run_search(recipe: Recipe, parts: Mapping[str, pd.DataFrame], run_dir: Path):
    """The resumable Hyperband study of ``recipe`` (SQLite in ``run_dir/search``) run to ``recipe.trials``
    finished trials on the training folds of ``parts``; returns the study."""
    study = search.open_study(run_dir / "search", NOTEBOOK, recipe.search_epochs,
                              recipe.reduction_factor, recipe.sampler, recipe.train.seed)
    search.optimize(study, objective(recipe, parts, run_dir / "search"), recipe.trials)
    return study


def with_best(recipe: Recipe, study) -> Recipe:
    """``recipe`` with the best trial's values (source: the trial), or unchanged without a finished trial."""
    best = search.best_trial(study)
    if best is None:
        return recipe
    source = f"Optuna Hyperband, best of {len(study.trials)} trials (#{best.number}, val acc {best.value:.3f})"
    values = {k: (v, source) for k, v in search_values(best.params).items()}
    searched = recipe.variant_of(recipe.variant, demo={k: v for k, v in recipe.demo.items() if k not in values},
                                 **values)
    return replace(searched, params={k: v for k, v in recipe.params.items() if k not in values})
