"""Face attributes (gender, race, age) on FairFace or UTKFace for a multi-task model: label spaces, splits,
predictions and the per-task, fairness and calibration report (notebook 08).

Every dataset becomes one frame ``[path, gender, race, age, age_years]``: ``gender`` 0 male / 1 female,
``race`` an index into the dataset's own race list, ``age`` one of FairFace's 9 age bins and ``age_years``
the regression target. The UTKFace mapping, explicit:

- gender: UTKFace 0 male / 1 female is FairFace's order (Male, Female) unchanged;
- race: UTKFace's 5 classes (White, Black, Asian, Indian, Others) keep a 5-class race head. FairFace's 7
  classes do not map onto them one to one (UTKFace's Asian spans East and Southeast Asian; Others spans
  Latino_Hispanic, Middle Eastern and more), so no class is merged or invented;
- age: integer years go into FairFace's bins (0-2, 3-9, 10-19, ..., 60-69, 70 and over) for the 9-bin
  head, and the years themselves are the regression target (FairFace has only bins: there the target is
  the bin midpoint, see ``AGE_MIDPOINTS``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import DataLoader

from helpers import data, engine, metrics
from helpers.datasets import ColumnsError, stratified_split
from helpers.datasets.constants import FAIRFACE_AGES, FAIRFACE_GENDERS, FAIRFACE_RACES, UTKFACE_RACES
from helpers.losses import MultiTaskLoss
from helpers.models import multitask as models
from helpers.recipes import Recipe

AGE_BINS = tuple(FAIRFACE_AGES)
AGE_LOWER = (0, 3, 10, 20, 30, 40, 50, 60, 70)  # first year of each FairFace bin
# Centre of each bin's whole years, (first + last) / 2; the open "more than 70" bin is given 75 by convention.
AGE_MIDPOINTS = (1.0, 6.0, 14.5, 24.5, 34.5, 44.5, 54.5, 64.5, 75.0)
AGE_RANGE = (0.0, 100.0)  # years mapped to [0, 1] for the range-normalised age loss (the seed's)
TARGETS = ["gender", "race", "age", "age_years"]
GROUPS = ("race", "gender")  # strata of the splits and groups of the fairness report
SPLITS = ("stratified", "official")
SEED_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}  # the seed's 70/15/15


@dataclass(frozen=True)
class LabelSpace:
    """The class names of each head for one dataset."""

    dataset: str
    genders: tuple[str, ...]
    races: tuple[str, ...]
    age_target: str  # what ``age_years`` holds
    ages: tuple[str, ...] = AGE_BINS

    @property
    def num_races(self) -> int:
        return len(self.races)


LABEL_SPACES = {
    "fairface": LabelSpace("fairface", tuple(FAIRFACE_GENDERS), tuple(FAIRFACE_RACES), "bin midpoint, years"),
    "utkface": LabelSpace("utkface", tuple(FAIRFACE_GENDERS), tuple(UTKFACE_RACES), "age in years"),
}


@dataclass
class MultiTaskData:
    """A dataset's label space and its ``train``/``val``/``test`` frames."""

    labels: LabelSpace
    splits: dict[str, pd.DataFrame]

    def __repr__(self) -> str:
        sizes = {name: len(frame) for name, frame in self.splits.items()}
        return f"MultiTaskData({self.labels.dataset!r}, races={self.labels.num_races}, splits={sizes})"


# ------------------------------------------------------------------------------------------------ labels

def age_to_bin(years) -> np.ndarray:
    """FairFace age-bin index of each age in years (below 0 counts as bin 0, 70 and over as the last)."""
    years = np.asarray(years, dtype=float)
    return np.clip(np.searchsorted(AGE_LOWER, years, side="right") - 1, 0, len(AGE_LOWER) - 1)


def _check(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    if any(c not in frame.columns for c in columns):
        raise ColumnsError(source, list(frame.columns), list(columns))


def from_fairface(frame: pd.DataFrame) -> pd.DataFrame:
    """A ``fairface.read`` split as ``[path, gender, race, age, age_years]`` (age_years: the bin midpoint)."""
    _check(frame, ["path", "gender_idx", "race_idx", "age_idx"], "FairFace frame (datasets.fairface.read)")
    ages = frame["age_idx"].to_numpy()
    return pd.DataFrame({"path": frame["path"].to_numpy(), "gender": frame["gender_idx"].to_numpy(),
                         "race": frame["race_idx"].to_numpy(), "age": ages,
                         "age_years": np.asarray(AGE_MIDPOINTS, dtype=np.float32)[ages]}, index=frame.index)


def from_utkface(frame: pd.DataFrame) -> pd.DataFrame:
    """A ``utkface.read`` frame (or labels.csv with the same columns) as ``[path, gender, race, age,
    age_years]``: gender and the 5 races unchanged, integer ages put in FairFace's bins and kept as years."""
    _check(frame, ["path", "age", "gender_idx", "race_idx"], "UTKFace frame (datasets.utkface.read)")
    bad = ~frame["gender_idx"].isin([0, 1]) | ~frame["race_idx"].between(0, len(UTKFACE_RACES) - 1)
    if bad.any():
        raise ValueError(f"UTKFace frame: {int(bad.sum())} row(s) with gender outside 0/1 or race outside "
                         f"0..{len(UTKFACE_RACES) - 1}, e.g. {frame.loc[bad, 'path'].iloc[0]}.")
    years = frame["age"].to_numpy(dtype=np.float32)
    return pd.DataFrame({"path": frame["path"].to_numpy(), "gender": frame["gender_idx"].to_numpy(),
                         "race": frame["race_idx"].to_numpy(), "age": age_to_bin(years), "age_years": years},
                        index=frame.index).astype({"gender": "int64", "race": "int64", "age": "int64"})


def mapping_table(dataset: str) -> pd.DataFrame:
    """How a dataset's labels land on the heads: one row per head with its classes and target."""
    labels = label_space(dataset)
    source = {"fairface": ("gender column", "race column (7 classes)", "age bin column"),
              "utkface": ("file name field 2 (0 male, 1 female)", "file name field 3 (0..4, 5 classes)",
                          "file name field 1 (integer years)")}[labels.dataset]
    return pd.DataFrame({
        "head": ["gender", "race", "age (classification)", "age (regression)"],
        "source": [source[0], source[1], source[2], source[2]],
        "classes / target": [", ".join(labels.genders), ", ".join(labels.races), ", ".join(labels.ages),
                             labels.age_target]}).set_index("head")


def label_space(dataset: str) -> LabelSpace:
    if dataset not in LABEL_SPACES:
        raise KeyError(f"Unknown multi-task dataset {dataset!r}; choose one of {sorted(LABEL_SPACES)}.")
    return LABEL_SPACES[dataset]


# ------------------------------------------------------------------------------------------------ splits

def make_splits(frames: Mapping[str, pd.DataFrame], how: str = "stratified", fraction: float = 1.0,
                seed: int = 0, fractions: Mapping[str, float] = SEED_FRACTIONS) -> dict[str, pd.DataFrame]:
    """``train``/``val``/``test`` frames, the same for the same seed.

    ``"stratified"``: every frame pooled, then the seed's 70/15/15 split stratified by race x gender.
    ``"official"``: FairFace's own split; ``val`` is 15% of its train split (stratified, for model selection)
    and ``test`` is its val split (FairFace publishes no test labels). ``fraction`` subsamples first.
    """
    if how not in SPLITS:
        raise ValueError(f"split={how!r}; choose one of {SPLITS}.")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    if how == "official":
        if set(frames) != {"train", "val"}:
            raise ValueError(f"split='official' needs the dataset's own train and val splits, found "
                             f"{sorted(frames)}; UTKFace has none: use split='stratified'.")
        train = _subset(frames["train"], fraction, seed)
        parts = stratified_split(train, {"train": 0.85, "val": 0.15}, by=list(GROUPS), seed=seed)
        return {**parts, "test": _subset(frames["val"], fraction, seed)}
    pooled = _subset(pd.concat(list(frames.values()), ignore_index=True), fraction, seed)
    return stratified_split(pooled, dict(fractions), by=list(GROUPS), seed=seed)


def _subset(frame: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """``fraction`` of the rows, stratified by race x gender (the seed's 1-3% subsets); all rows at 1."""
    if fraction == 1:
        return frame
    return stratified_split(frame, {"keep": fraction, "rest": 1 - fraction}, by=list(GROUPS), seed=seed)["keep"]


def load(dataset: str = "fairface", split: str = "stratified", fraction: float = 1.0, seed: int = 0,
         root: Path | None = None) -> MultiTaskData:
    """Read ``dataset`` ("fairface" or "utkface") for the active profile and split it (``make_splits``)."""
    labels = label_space(dataset)
    faceset = data.load(dataset, root)
    convert = from_fairface if dataset == "fairface" else from_utkface
    frames = {name: convert(frame) for name, frame in faceset.splits.items()}
    return MultiTaskData(labels, make_splits(frames, split, fraction, seed))


def race_weights(train: pd.DataFrame, num_races: int) -> torch.Tensor:
    """Class weights for the race loss from the training split: scikit-learn's "balanced" heuristic
    ``n / (k * count)`` over the k races present; a race absent from training gets 0."""
    present = np.unique(train["race"].to_numpy())
    if present.min() < 0 or present.max() >= num_races:
        raise ValueError(f"race labels {present.tolist()} fall outside 0..{num_races - 1}.")
    weights = np.zeros(num_races, dtype=np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=train["race"].to_numpy())
    return torch.from_numpy(weights)


def make_loaders(splits: Mapping[str, pd.DataFrame], recipe: Recipe) -> dict[str, DataLoader]:
    """``data.make_loaders`` for the attribute targets ``{gender, race, age, age_years}``: ``train`` shuffled
    and augmented at ``recipe.augment``, the other splits in order with the eval transform."""
    return data.make_loaders(splits, recipe.augment, recipe.image_size, recipe.batch_size, target=TARGETS,
                             num_workers=recipe.num_workers, seed=recipe.train.seed, pipeline=recipe.pipeline)


def split_table(data: MultiTaskData) -> pd.DataFrame:
    """Images per race and split, with the race class weights the training split gives."""
    races = pd.Index(data.labels.races, name="race")
    counts = {name: np.bincount(frame["race"], minlength=len(races)) for name, frame in data.splits.items()}
    table = pd.DataFrame(counts, index=races)
    table["race weight"] = race_weights(data.splits["train"], data.labels.num_races).numpy().round(3)
    table.loc["all"] = [*table[list(data.splits)].sum(), np.nan]
    return table


def build_model(recipe: Recipe, labels: LabelSpace, train: pd.DataFrame) -> models.MultiTaskModel:
    """The recipe's backbone with gender, race (``labels.num_races``) and age heads, the age head starting at
    the ``train`` split's median age (regression) or age-bin frequencies (classification)."""
    model = models.create(recipe.backbone, labels.num_races, recipe.age_mode, recipe.pretrained,
                          hidden=recipe.hidden, dropout=recipe.dropout, age_range=AGE_RANGE)
    frequencies = np.bincount(train["age"], minlength=len(AGE_BINS)) / max(len(train), 1)
    model.init_age_bias(train["age_years"].median() if recipe.age_mode == "regression" else frequencies)
    return model


def build_loss(recipe: Recipe, labels: LabelSpace, train: pd.DataFrame) -> MultiTaskLoss:
    """The recipe's task-weighted loss, race classes weighted from the ``train`` split when it asks for it."""
    weights = race_weights(train, labels.num_races) if recipe.race_class_weights else None
    task_weights = dict(zip(MultiTaskLoss.TASKS, recipe.loss_weights, strict=True))
    return MultiTaskLoss(task_weights, weights, recipe.age_mode, AGE_RANGE, recipe.train.label_smoothing)


def chance(test: pd.DataFrame, labels: LabelSpace) -> dict[str, float]:
    """Expected scores on ``test`` of guessing uniformly at random: 1/classes for gender, race and age bin, the
    share of bins within one of the true bin, and the mean distance in years to a random bin's midpoint."""
    bins, midpoints = test["age"].to_numpy(), np.asarray(AGE_MIDPOINTS)
    near = np.minimum(bins + 1, len(AGE_BINS) - 1) - np.maximum(bins - 1, 0) + 1
    return {"gender_acc": 1 / len(labels.genders), "race_acc": 1 / labels.num_races, "age_acc": 1 / len(AGE_BINS),
            "age_one_off": float(np.mean(near / len(AGE_BINS))),
            "age_mae": float(np.abs(test["age_years"].to_numpy()[:, None] - midpoints).mean())}


def no_image(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    """Scores on ``test`` of a model that ignores the image: the training split's majority gender, race and
    age bin, and its median age (MAE, RMSE): a stronger reference than chance."""
    def majority(column: str) -> float:
        return float((test[column] == train[column].mode().iloc[0]).mean())
    median = np.full(len(test), float(train["age_years"].median()))
    mode_bin = np.full(len(test), train["age"].mode().iloc[0])
    return {"gender_acc": majority("gender"), "race_acc": majority("race"), "age_acc": majority("age"),
            "age_one_off": metrics.one_off_accuracy(test["age"], mode_bin),
            "age_mae": metrics.mae(test["age_years"], median), "age_rmse": metrics.rmse(test["age_years"], median)}


# ------------------------------------------------------------------------------------------- predictions

def decode(outputs: Mapping[str, torch.Tensor], age_mode: str) -> dict[str, np.ndarray]:
    """Predictions from a multi-task model's outputs: classes, gender/race probabilities, age bin and years
    (regression: years binned; classification: the predicted bin's midpoint)."""
    gender = torch.softmax(outputs["gender"].float(), 1)
    race = torch.softmax(outputs["race"].float(), 1)
    if age_mode == "regression":
        years = outputs["age"].float().numpy()
        bins = age_to_bin(years)
    else:
        bins = outputs["age"].argmax(1).numpy()
        years = np.asarray(AGE_MIDPOINTS)[bins]
    return {"gender": gender.argmax(1).numpy(), "gender_prob": gender.numpy(), "race": race.argmax(1).numpy(),
            "race_prob": race.numpy(), "age": bins, "age_years": years}


def _table(outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor], age_mode: str,
           paths: Sequence[str] | None = None) -> pd.DataFrame:
    """True ``gender, race, age, age_years``, predicted ``pred_*``, ``p_female`` and ``race_conf``."""
    pred = decode(outputs, age_mode)
    frame = pd.DataFrame({**({"path": list(paths)} if paths is not None else {}),
                          **{k: targets[k].numpy() for k in TARGETS}})
    for key in TARGETS:
        frame[f"pred_{key}"] = pred[key]
    frame["p_female"] = pred["gender_prob"][:, 1]
    frame["race_conf"] = pred["race_prob"].max(1)
    return frame


def predict_table(model: torch.nn.Module, loader: DataLoader, age_mode: str, progress: bool = False) -> pd.DataFrame:
    """One row per image of an evaluation loader (``make_loaders``' val/test): ``path``, the true labels,
    the predictions ``pred_*``, ``p_female`` and ``race_conf`` (softmax probabilities)."""
    outputs, targets = engine.predict(model, loader, return_targets=True, progress=progress)
    if len(targets["gender"]) != len(loader.dataset):
        raise ValueError(f"predict_table got {len(targets['gender'])} of {len(loader.dataset)} images; use an "
                         "evaluation loader (make_loaders' val/test) that keeps every image.")
    return _table(outputs, targets, age_mode, loader.dataset.frame["path"].to_numpy())


def age_error_by_bin(pred: pd.DataFrame, labels: LabelSpace) -> pd.DataFrame:
    """Age MAE and RMSE in years per true age bin, bins in age order."""
    bins = pd.Series(pred["age"].to_numpy(), name="age")
    table = metrics.error_by_group(pred["age_years"], pred["pred_age_years"], bins)
    table.insert(0, "age bin", np.asarray(labels.ages, dtype=object)[table["age"].to_numpy()])
    return table.drop(columns="age")


def gender_probs(pred: pd.DataFrame) -> np.ndarray:
    """``(N, 2)`` gender probabilities (male, female) of a predictions frame."""
    return np.stack([1 - pred["p_female"].to_numpy(), pred["p_female"].to_numpy()], axis=1)


def task_metrics(pred: pd.DataFrame, n_bins: int = 10) -> dict[str, float]:
    """Per-task metrics of a predictions frame: accuracies, age exact/one-off accuracy, MAE/RMSE in years,
    the gender calibration error and the worst race x gender group's gender and race accuracy."""
    groups = {g: pred[g] for g in GROUPS}
    return {
        "gender_acc": metrics.accuracy(pred["pred_gender"], pred["gender"]),
        "race_acc": metrics.accuracy(pred["pred_race"], pred["race"]),
        "race_balanced_acc": metrics.balanced_accuracy(pred["pred_race"], pred["race"]),
        "age_acc": metrics.accuracy(pred["pred_age"], pred["age"]),
        "age_one_off": metrics.one_off_accuracy(pred["age"], pred["pred_age"]),
        "age_mae": metrics.mae(pred["age_years"], pred["pred_age_years"]),
        "age_rmse": metrics.rmse(pred["age_years"], pred["pred_age_years"]),
        "gender_ece": metrics.expected_calibration_error(gender_probs(pred), pred["gender"], n_bins),
        "gender_worst_group_acc": metrics.worst_group_accuracy(pred["gender"], pred["pred_gender"], groups),
        "race_worst_group_acc": metrics.worst_group_accuracy(pred["race"], pred["pred_race"], groups),
    }


def metrics_fn(age_mode: str) -> Callable[[Mapping, Mapping], dict[str, float]]:
    """For ``engine.fit(metrics_fn=...)``: ``task_metrics`` of the validation pass as ``val_<metric>``
    history columns (e.g. ``val_gender_acc``), since the engine's own accuracy covers single outputs only."""
    def compute(outputs: Mapping, targets: Mapping) -> dict[str, float]:
        return {f"val_{key}": value for key, value in task_metrics(_table(outputs, targets, age_mode)).items()}
    return compute


# ---------------------------------------------------------------------------------------------- fairness

def named(pred: pd.DataFrame, labels: LabelSpace) -> pd.DataFrame:
    """``pred`` with class names instead of indices in the label columns (for tables and titles)."""
    out = pred.copy()
    names = {"gender": labels.genders, "race": labels.races, "age": labels.ages}
    for key, vocabulary in names.items():
        for column in (key, f"pred_{key}"):
            out[column] = np.asarray(vocabulary, dtype=object)[pred[column].to_numpy()]
    return out


def fairness_table(pred: pd.DataFrame, labels: LabelSpace, task: str = "gender") -> pd.DataFrame:
    """Accuracy of ``task`` per race (rows) x gender (columns), with an ``all`` row and column."""
    pred = named(pred, labels)
    table = metrics.group_accuracy_table(pred[task], pred[f"pred_{task}"], pred["race"], pred["gender"])
    return table.reindex(index=[*labels.races, "all"], columns=[*labels.genders, "all"]).dropna(how="all")


def fairness_summary(pred: pd.DataFrame, labels: LabelSpace, min_count: int = 1) -> pd.DataFrame:
    """Per task: overall accuracy, best and worst race x gender group, the largest gap between groups,
    and for gender the largest true-positive-rate gap across races (either gender as the positive class)."""
    named_pred = named(pred, labels)
    groups = {g: named_pred[g] for g in GROUPS}
    rows = {}
    for task in ("gender", "race", "age"):
        truth, guess = named_pred[task], named_pred[f"pred_{task}"]
        scores = metrics.group_accuracy(truth, guess, groups, min_count=min_count)
        worst, best = scores.loc[scores["accuracy"].idxmin()], scores.loc[scores["accuracy"].idxmax()]
        rows[task] = {"accuracy": metrics.accuracy(guess, truth), "groups": len(scores),
                      "worst group": " / ".join(worst[list(GROUPS)]),
                      "worst group accuracy": worst["accuracy"],
                      "best group": " / ".join(best[list(GROUPS)]), "best group accuracy": best["accuracy"],
                      "largest gap": best["accuracy"] - worst["accuracy"]}
    rows["gender"]["TPR gap across races"] = metrics.tpr_gap(named_pred["gender"], named_pred["pred_gender"],
                                                             named_pred["race"], labels=list(labels.genders))
    return pd.DataFrame(rows).T


def sample_titles(pred: pd.DataFrame, labels: LabelSpace) -> tuple[list[str], list[str]]:
    """``(true, predicted)`` captions like ``F · Black · 20-29 (24)`` (gender initial, race, age bin, years)."""
    pred = named(pred, labels)

    def caption(prefix: str) -> list[str]:
        columns = [pred[f"{prefix}{key}"] for key in TARGETS]
        return [f"{g[0]} · {r} · {a} ({y:.0f})" for g, r, a, y in zip(*columns, strict=True)]
    return caption(""), caption("pred_")
