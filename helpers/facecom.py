"""FACECOM (COMSYS Hackathon-5) with one dual-head model (notebook 09): splits, loaders for one or both tasks,
the staged training, the hackathon's scores, distortion robustness and the prediction CSVs.

Protocols (each split's people are its own: Task B's train and val identities are disjoint):

* Task A, gender: accuracy and macro precision / recall / F1 over (female, male) on val; ``f1_male`` is the
  binary F1 with male as the positive class (scikit-learn's default, what most participants reported: always
  answering "male" already scores 0.89 on a 4:1 split). Early stopping uses ``dev``, a stratified part of train.
* Task B, matching: every distorted image of a split is a query; the gallery is the split's clean images, one
  mean embedding per identity; a query gets its nearest identity (cosine). Scores: top-1 accuracy and macro-F1
  over identities. No class of the training identities is involved: only the embedding transfers to the unseen
  people. ``dev`` is a share of the training identities held out of training (early stopping, thresholds).
  Each distorted image is a copy of one of the gallery's own clean images, so even an untrained network matches
  many (the geometric and noise distortions): compare with it, and with the robustness probes below.
* Task B, pairs: each query with its own identity (match) and one other identity drawn at random (non-match);
  the cosine to the identity's mean embedding is the score; the threshold is chosen on ``dev`` pairs.
* Robustness: per identity with 2+ clean images, the last one is a probe, shown clean and under each
  distortion, against a gallery of the other clean images (the probe's source never in the gallery, so the
  clean row is comparable); the ``official`` column is the Task B protocol per distortion.
* Combined score: ``0.3 * Task A F1 + 0.7 * Task B macro-F1`` (the hackathon weights 30/70; which metric of a
  task enters is not published: each task's F1 here).
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torchvision.transforms import v2

from helpers import config, data, engine, metrics, transforms, verification
from helpers.checkpoint import load_checkpoint
from helpers.datasets import FaceSet, holdout_split
from helpers.datasets.constants import FACECOM_GENDERS
from helpers.distortions import DISTORTIONS, RandomDistortion, distort
from helpers.imageio import load_rgb
from helpers.models import dual_head, freezing
from helpers.models.dual_head import DualHeadLoss, DualHeadModel
from helpers.recipes import Recipe
from helpers.submission import SubmissionError, write_csv

GENDERS = tuple(FACECOM_GENDERS)  # label order: 0 female, 1 male
CLEAN = "clean"
WEIGHTS = {"task_a": 0.3, "task_b": 0.7}
TASK_A_COLUMNS = ("image", "predicted_label", "true_label")
TASK_B_COLUMNS = ("image", "predicted_identity", "true_identity", "similarity")


# ------------------------------------------------------------------------------------------------ splits

def task_a_splits(faceset: FaceSet, dev_fraction: float, seed: int = 0) -> dict[str, pd.DataFrame]:
    """``train``/``dev``/``val``: ``dev_fraction`` of Task A train held out, stratified by gender."""
    train, dev = holdout_split(faceset["train"], dev_fraction, by="label", seed=seed)
    return {"train": train, "dev": dev, "val": faceset["val"]}


def people(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``person`` (index over its own sorted identities), ``clean`` (1 for an undistorted image)
    and ``source`` (the stem of the clean image a row shows: ``<stem>_<distortion>`` -> ``<stem>``)."""
    stems = [Path(p).stem for p in frame["path"]]
    clean = (frame["distortion"] == CLEAN).to_numpy()
    return frame.assign(person=pd.factorize(frame["identity"], sort=True)[0], clean=clean.astype(np.int64),
                        source=[s if c else s.rsplit("_", 1)[0] for s, c in zip(stems, clean, strict=True)])


def split_identities(frame: pd.DataFrame, fraction: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rest, held_out)``: ``fraction`` of the identities (at least one, one kept) and all their images."""
    names = np.random.default_rng(seed).permutation(sorted(frame["identity"].unique()))
    n = min(len(names) - 1, max(1, round(fraction * len(names))))
    held = frame["identity"].isin(names[:n])
    return frame[~held], frame[held]


def task_b_splits(faceset: FaceSet, dev_identities: float, seed: int = 0) -> dict[str, pd.DataFrame]:
    """``train`` (its identities relabelled 0..n-1: ArcFace's classes), ``dev`` (held-out training identities)
    and ``val``, the last two with :func:`people` columns."""
    train, dev = split_identities(faceset["train"], dev_identities, seed)
    train = train.assign(label=pd.factorize(train["identity"], sort=True)[0])
    return {"train": train, "dev": people(dev), "val": people(faceset["val"])}


def split_table(parts_a: Mapping[str, pd.DataFrame], parts_b: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Images per split: Task A by gender, Task B identities, clean and distorted images."""
    rows = {f"A {name}": {"images": len(f), **f["gender"].value_counts().reindex(GENDERS, fill_value=0)}
            for name, f in parts_a.items()}
    rows.update({f"B {name}": {"images": len(f), "identities": f["identity"].nunique(),
                               "clean": int((f["distortion"] == CLEAN).sum()),
                               "distorted": int((f["distortion"] != CLEAN).sum())} for name, f in parts_b.items()})
    return pd.DataFrame(rows).T.fillna(0).astype(int)


# ------------------------------------------------------------------------------------------------ loaders

class TaskZip:
    """Batches of several tasks at once, for :class:`~helpers.models.dual_head.DualHeadModel`: inputs
    ``{task: images}`` and targets ``{task: labels}`` (a loader whose targets are a dict adds its keys as they
    are). Training (``pad=False``): an epoch is as long as the shortest loader, whose images all come once while
    the longer ones are sampled (each restarts, reshuffled, every epoch). Evaluation (``pad=True``): every image
    of every loader exactly once, a finished loader giving empty batches. The engine counts a batch's size by
    its first task."""

    def __init__(self, loaders: Mapping[str, Iterable], pad: bool = False):
        if not loaders:
            raise ValueError("TaskZip needs at least one loader.")
        self.loaders, self.pad = dict(loaders), pad

    def __len__(self) -> int:
        return (max if self.pad else min)(len(loader) for loader in self.loaders.values())

    def seed(self, seed: int) -> None:
        """Seed each loader's shuffling (the engine calls this every epoch, so resuming repeats an epoch)."""
        for i, loader in enumerate(self.loaders.values()):
            if isinstance(generator := getattr(loader, "generator", None), torch.Generator):
                generator.manual_seed(seed + i)

    @staticmethod
    def _padded(loader: Iterable) -> Iterator:
        batch = None
        for batch in loader:
            yield batch
        if batch is None:
            raise ValueError("TaskZip: a loader yields no batches.")
        while True:
            yield _empty(batch)

    def __iter__(self) -> Iterator[tuple[dict, dict]]:
        streams = {task: self._padded(loader) if self.pad else iter(loader) for task, loader in self.loaders.items()}
        for _ in range(len(self)):
            inputs, targets = {}, {}
            for task, stream in streams.items():
                inputs[task], target = next(stream)
                targets.update(target if isinstance(target, Mapping) else {task: target})
            yield inputs, targets


def _empty(batch):
    """A batch of the same structure with no rows."""
    if isinstance(batch, torch.Tensor):
        return batch[:0]
    if isinstance(batch, Mapping):
        return {k: _empty(v) for k, v in batch.items()}
    return type(batch)(_empty(v) for v in batch)


def train_transform(recipe: Recipe, norm: str) -> v2.Compose:
    """The 09 training augmentation: with ``distortion_p`` one of the seven FACECOM distortions (noise among
    them), with ``perspective_p`` a perspective warp, then the ``augment`` level (crop, flip, rotation, colour
    jitter for 'medium') and the normalisation."""
    steps = [RandomDistortion(p=recipe.distortion_p)] if recipe.distortion_p else []
    steps += [v2.RandomPerspective(distortion_scale=0.2, p=recipe.perspective_p)] if recipe.perspective_p else []
    return v2.Compose([*steps, transforms.build(recipe.augment, recipe.image_size, True, norm)])


def augmentation_preview(path: str | Path, recipe: Recipe, n: int = 6, seed: int = 0,
                         ) -> tuple[list, list[str]]:
    """``(images, titles)``: an image, each FACECOM distortion of it, then ``n`` draws of the training
    augmentation (denormalised), for ``plots.image_grid``."""
    image = load_rgb(path)
    images = [image, *(distort(image, kind, seed) for kind in DISTORTIONS)]
    transform = train_transform(recipe, "imagenet")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        images += [transforms.denormalize(transform(image)) for _ in range(n)]
    return images, [CLEAN, *DISTORTIONS, *[f"train draw {i + 1}" for i in range(n)]]


def make_loaders(parts_a: Mapping[str, pd.DataFrame], parts_b: Mapping[str, pd.DataFrame], recipe: Recipe,
                 norm: str) -> tuple[dict[str, TaskZip], dict[str, TaskZip]]:
    """``(train, val)``, each a zip per stage data: ``gender`` (Task A), ``verification`` (Task B) and
    ``joint`` (both); val on the dev splits (Task B dev targets: ``person`` and ``clean``, no training class)."""
    def loader(frame: pd.DataFrame, train: bool, target, seed: int = 0):
        batches = data.loader(frame, recipe.image_size, recipe.batch_size, train, target=target, norm=norm,
                              num_workers=recipe.num_workers, seed=recipe.train.seed + seed, pipeline="cpu")
        if train:  # the 09 augmentation (PIL) instead of the level's, set before any worker starts
            batches.dataset.transform = train_transform(recipe, norm)
        return batches

    def per_stage(gender, identity, pad: bool) -> dict[str, TaskZip]:
        return {"gender": TaskZip({"gender": gender}, pad), "verification": TaskZip({"identity": identity}, pad),
                "joint": TaskZip({"gender": gender, "identity": identity}, pad)}

    return (per_stage(loader(parts_a["train"], True, "label"), loader(parts_b["train"], True, "label", 1), False),
            per_stage(loader(parts_a["dev"], False, "label"), loader(parts_b["dev"], False, ["person", "clean"]), True))


# ----------------------------------------------------------------------------------------------- training

def build_model(recipe: Recipe, num_identities: int) -> DualHeadModel:
    """The recipe's dual-head model, seeded by the recipe: every call starts from the same weights (the
    single-task models and the untrained reference share the dual model's start)."""
    config.seed_everything(recipe.train.seed)
    return dual_head.create(recipe.model, num_identities, recipe.pretrained, hidden=recipe.hidden,
                            embedding_dim=recipe.embedding_dim, gender_dropout=recipe.gender_dropout,
                            verification_dropout=recipe.verification_dropout, s=recipe.s, m=recipe.m,
                            easy_margin=recipe.easy_margin, drop_path_rate=recipe.drop_path_rate)


def class_weights(labels: Sequence[int]) -> torch.Tensor:
    """scikit-learn's 'balanced' weights ``n / (2 * count)`` of the two genders."""
    return torch.tensor(compute_class_weight("balanced", classes=np.arange(len(GENDERS)), y=np.asarray(labels)),
                        dtype=torch.float32)


def stage_losses(model: DualHeadModel, recipe: Recipe, weights: torch.Tensor | None) -> dict[str, DualHeadLoss]:
    """The loss of each stage: gender alone, identity alone, and ``joint_weight`` : ``1 - joint_weight``."""
    share = recipe.joint_weight
    tasks = {"gender": {"gender": 1.0}, "verification": {"identity": 1.0},
             "joint": {"gender": share, "identity": 1.0 - share}}
    return {name: DualHeadLoss(model.arcface, w, weights, recipe.train.label_smoothing) for name, w in tasks.items()}


def fit(model: DualHeadModel, recipe: Recipe, train: Mapping[str, TaskZip], val: Mapping[str, TaskZip],
        stages: Sequence[engine.Stage], run_dir: str | Path, train_labels: Sequence[int],
        resume: bool = False) -> pd.DataFrame:
    """``engine.fit_stages`` over ``stages`` with each stage's loss (class weights from ``train_labels``, Task
    A's) and the dev metrics of :func:`metrics_fn` every epoch; the model ends on the best weights of the last
    stage's monitor, and ``run_dir/stage_<i>/best.pt`` keeps each stage's best."""
    weights = class_weights(train_labels) if recipe.class_weights else None
    cfg = replace(recipe.train, monitor=stages[-1].overrides["monitor"])
    return engine.fit_stages(model, train, val, cfg, run_dir, stages, stage_losses(model, recipe, weights), resume,
                             metrics_fn=metrics_fn, meta=recipe.record())


def stage_table(model: DualHeadModel, stages: Sequence[engine.Stage]) -> pd.DataFrame:
    """Per stage: epochs, what trains (parameters per part), the rate of each part, schedule, early stopping,
    loss and monitor. Leaves the model as the first stage trains it."""
    rows = []
    for stage in stages:
        counts = freezing.freeze(model, stage.freeze, stage.trainable)
        lr, rates = stage.overrides["lr"], stage.overrides.get("param_groups", {})
        trains = {prefix: any(p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix))
                  for prefix in rates}
        rows.append({"stage": stage.name, "epochs": stage.epochs, "trainable parameters": counts["trainable"],
                     **{f"lr {prefix.rstrip('.')}": f"{lr * rate:.2g}" if trains[prefix] else "frozen"
                        for prefix, rate in rates.items()},
                     "schedule": stage.overrides.get("scheduler"), "early stopping": stage.overrides.get("early_stopping"),
                     "loss": stage.loss, "monitor": stage.overrides.get("monitor")})
    freezing.freeze(model, stages[0].freeze, stages[0].trainable)
    return pd.DataFrame(rows).set_index("stage")


# ------------------------------------------------------------------------------------------------ metrics

def task_a_scores(y_true, y_pred) -> dict[str, float]:
    """Accuracy, macro precision/recall/F1 over (female, male), the binary F1 with male positive and the
    female recall."""
    report = metrics.classification_report_df(y_true, y_pred, labels=[0, 1], target_names=list(GENDERS))
    macro = report.loc["macro avg"]
    return {"accuracy": metrics.accuracy(y_pred, y_true), "precision": float(macro["precision"]),
            "recall": float(macro["recall"]), "f1": float(macro["f1"]), "f1_male": float(report.loc["male", "f1"]),
            "female_recall": float(report.loc["female", "recall"])}


def task_a_report(train_labels: Sequence[int], pred: pd.DataFrame, weighted: bool = True) -> pd.DataFrame:
    """The imbalance and how it is met: per gender its training images, its loss weight ('balanced' when
    ``weighted``, as ``recipe.class_weights`` trains, else 1) and the val precision, recall, F1 and support of
    ``pred`` (``predict_gender``), plus the macro average."""
    report = metrics.classification_report_df(pred["label"], pred["predicted"], labels=[0, 1],
                                              target_names=list(GENDERS))
    counts = np.bincount(np.asarray(train_labels), minlength=len(GENDERS))
    weights = class_weights(train_labels).tolist() if weighted else [1.0] * len(GENDERS)
    report.insert(0, "loss weight", [*weights, np.nan])
    report.insert(0, "train images", [*counts, counts.sum()])
    return report


def identification_scores(truth: Sequence, predicted: Sequence) -> dict[str, float]:
    """Top-1 accuracy and macro-F1 over the identities seen in ``truth`` or ``predicted`` (scikit-learn's)."""
    truth, predicted = np.asarray(truth, dtype=str), np.asarray(predicted, dtype=str)
    report = metrics.classification_report_df(truth, predicted)
    return {"top1": metrics.accuracy(predicted, truth), "macro_f1": float(report.loc["macro avg", "f1"])}


def combined_score(task_a_f1: float, task_b_f1: float) -> float:
    """The hackathon's weighting: 30% Task A, 70% Task B."""
    return WEIGHTS["task_a"] * task_a_f1 + WEIGHTS["task_b"] * task_b_f1


def chance(gender_labels: Sequence[int], n_identities: int) -> dict[str, float]:
    """Scores without looking at the images: Task A macro-F1 of the better of always the majority gender and
    guessing at the class prior (1/2 in expectation); Task B top-1 (and macro-F1) of a uniform guess."""
    labels = np.asarray(gender_labels)
    majority = task_a_scores(labels, np.full(len(labels), np.bincount(labels, minlength=2).argmax()))["f1"]
    task_a, task_b = max(majority, 1 / len(GENDERS)), 1 / n_identities
    return {"task_a_chance_f1": task_a, "task_b_chance_top1": task_b, "task_b_chance_macro_f1": task_b,
            "chance_combined": combined_score(task_a, task_b)}


def match(queries: torch.Tensor, query_ids: Sequence, gallery: torch.Tensor, gallery_ids: Sequence) -> pd.DataFrame:
    """Each query's nearest gallery identity (cosine to the identity's mean embedding): ``identity`` (truth),
    ``predicted`` and ``score``."""
    centres, names = verification.build_gallery(gallery, np.asarray(gallery_ids, dtype=str), "mean")
    found = verification.identify(queries, centres, names)
    return pd.DataFrame({"identity": np.asarray(query_ids, dtype=str), "predicted": found["nearest"].to_numpy(),
                         "score": found["score"].to_numpy()})


def metrics_fn(outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The dev metrics of an evaluation :class:`TaskZip` (``engine.fit(metrics_fn=...)``): ``val_task_a_f1``
    and ``_acc``, ``val_task_b_top1`` and ``_macro_f1`` (distorted dev images against the clean ones of the
    held-out identities) and ``val_combined``, for the tasks present."""
    scores = {}
    if len(outputs.get("gender", ())):
        a = task_a_scores(targets["gender"], outputs["gender"].argmax(1))
        scores.update(task_a_f1=a["f1"], task_a_acc=a["accuracy"])
    if "embedding" in outputs and "person" in targets:
        clean, person, embedding = targets["clean"].numpy() == 1, targets["person"].numpy(), outputs["embedding"]
        found = match(embedding[~clean], person[~clean], embedding[clean], person[clean])
        b = identification_scores(found["identity"], found["predicted"])
        scores.update(task_b_top1=b["top1"], task_b_macro_f1=b["macro_f1"])
    if {"task_a_f1", "task_b_macro_f1"} <= set(scores):
        scores["combined"] = combined_score(scores["task_a_f1"], scores["task_b_macro_f1"])
    return {f"val_{key}": value for key, value in scores.items()}


# --------------------------------------------------------------------------------------------- evaluation

def predict_gender(model: DualHeadModel, frame: pd.DataFrame, recipe: Recipe) -> pd.DataFrame:
    """``frame`` with ``predicted`` (0 female, 1 male) and ``p_female`` from the gender head."""
    loader = data.loader(frame, recipe.image_size, recipe.batch_size, train=False, target="label",
                         norm=model.info.norm, num_workers=recipe.num_workers)
    probs = engine.predict(model, loader, progress=False)["gender"].softmax(1).numpy()
    return frame.assign(predicted=probs.argmax(1), p_female=probs[:, 0])


def embed(model: DualHeadModel, frame: pd.DataFrame, recipe: Recipe) -> verification.EmbeddingStore:
    """Every image of ``frame`` embedded once by the verification head (flip TTA per the recipe)."""
    return verification.embed_store(model.embedder, frame["path"], recipe.image_size, model.info.norm,
                                    recipe.batch_size, recipe.flip_tta, normalize=True, progress=False)


def task_b_matches(store: verification.EmbeddingStore, frame: pd.DataFrame) -> pd.DataFrame:
    """The Task B protocol on a split: its distorted images against its clean ones; ``frame``'s distorted rows
    with ``predicted`` and ``score``."""
    clean = frame["distortion"] == CLEAN
    queries, gallery = frame[~clean], frame[clean]
    found = match(store[queries["path"]], queries["identity"], store[gallery["path"]], gallery["identity"])
    return queries.assign(predicted=found["predicted"].to_numpy(), score=found["score"].to_numpy())


def task_b_scores(model: DualHeadModel, frame: pd.DataFrame, recipe: Recipe) -> dict[str, float]:
    """Top-1 and macro-F1 of the Task B protocol on ``frame``; on the training split, what the head learned
    about people it trained on."""
    found = task_b_matches(embed(model, frame, recipe), frame)
    return identification_scores(found["identity"], found["predicted"])


def robustness_table(store: verification.EmbeddingStore, frame: pd.DataFrame) -> pd.DataFrame:
    """Top-1 and macro-F1 per condition (clean and each distortion) of held-out probes (see the module notes),
    with ``official``: the Task B protocol's top-1 per distortion."""
    frame = people(frame)
    clean = frame[frame["clean"] == 1]
    several = clean[clean.groupby("identity")["source"].transform("size") > 1]
    probes = set(several.groupby("identity")["source"].max().items())
    is_probe = pd.Series(list(zip(frame["identity"], frame["source"], strict=True)), index=frame.index).isin(probes)
    gallery, queries = clean[~is_probe[clean.index]], frame[is_probe]
    found = match(store[queries["path"]], queries["identity"], store[gallery["path"]], gallery["identity"])
    found["distortion"] = queries["distortion"].to_numpy()
    official = task_b_matches(store, frame)
    rows = {}
    for kind in (CLEAN, *DISTORTIONS):
        part, full = found[found["distortion"] == kind], official[official["distortion"] == kind]
        if len(part):
            rows[kind] = {"probes": len(part), **identification_scores(part["identity"], part["predicted"]),
                          "official_top1": metrics.accuracy(full["predicted"], full["identity"]) if len(full)
                          else np.nan}
    return pd.DataFrame(rows).T.astype({"probes": int})


def match_pairs(store: verification.EmbeddingStore, frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Pairs of each distorted image with its own identity (``match`` 1) and one other drawn at random (0):
    ``path``, ``candidate``, ``match``, ``score`` (cosine to the candidate's mean clean embedding)."""
    clean = frame["distortion"] == CLEAN
    queries = frame[~clean]
    centres, names = verification.build_gallery(store[frame.loc[clean, "path"]], frame.loc[clean, "identity"])
    if len(names) < 2:
        raise ValueError("match_pairs needs at least two identities.")
    identities = queries["identity"].to_numpy(dtype=str)
    if missing := sorted(set(identities) - set(names.tolist())):
        raise ValueError(f"Distorted images of {[str(m) for m in missing[:5]]} have no clean image to match against: each "
                         "identity folder needs at least one clean image.")
    scores = verification.similarity(store[queries["path"]], centres).numpy()
    own = np.searchsorted(names, identities)
    other = (own + np.random.default_rng(seed).integers(1, len(names), len(own))) % len(names)
    rows = np.arange(len(own))
    return pd.DataFrame({"path": np.tile(queries["path"].to_numpy(), 2), "candidate": names[np.r_[own, other]],
                         "match": np.r_[np.ones(len(own)), np.zeros(len(own))].astype(int),
                         "score": np.r_[scores[rows, own], scores[rows, other]]})


def pair_report(dev: pd.DataFrame, val: pd.DataFrame) -> dict[str, float]:
    """ROC AUC and EER of the ``val`` pairs, and accuracy, match F1 and macro-F1 (match / non-match) at the
    accuracy-best threshold of the ``dev`` pairs (training identities held out of training)."""
    threshold, dev_accuracy = metrics.best_threshold(dev["match"], dev["score"])
    decision = (val["score"] >= threshold).astype(int)
    report = metrics.classification_report_df(val["match"], decision, labels=[0, 1],
                                              target_names=["non-match", "match"])
    eer, _ = metrics.eer(val["match"], val["score"])
    return {"threshold": threshold, "dev_accuracy": dev_accuracy, "auc": metrics.roc_auc(val["match"], val["score"]),
            "eer": eer, "accuracy": metrics.accuracy(decision, val["match"]), "f1": float(report.loc["match", "f1"]),
            "macro_f1": float(report.loc["macro avg", "f1"])}


@dataclass
class Evaluation:
    """A model on both val splits: the scores, Task A predictions, Task B matches and the embeddings."""

    scores: dict[str, float]
    gender: pd.DataFrame
    matches: pd.DataFrame
    store: verification.EmbeddingStore


def evaluate(model: DualHeadModel, parts_a: Mapping[str, pd.DataFrame], parts_b: Mapping[str, pd.DataFrame],
             recipe: Recipe) -> Evaluation:
    """Task A and Task B on the official val splits, and the combined score."""
    gender = predict_gender(model, parts_a["val"], recipe)
    store = embed(model, parts_b["val"], recipe)
    found = task_b_matches(store, parts_b["val"])
    a = task_a_scores(gender["label"], gender["predicted"])
    b = identification_scores(found["identity"], found["predicted"])
    scores = {**{f"task_a_{k}": v for k, v in a.items()}, "task_b_top1": b["top1"], "task_b_macro_f1": b["macro_f1"],
              "combined_score": combined_score(a["f1"], b["macro_f1"])}
    return Evaluation(scores, gender, found, store)


COMPARED = ["task_a_f1", "task_a_accuracy", "task_b_top1", "task_b_macro_f1", "combined_score"]


def stage_comparison(model: DualHeadModel, run_dir: Path, stages: Sequence[engine.Stage],
                     others: Mapping[str, nn.Module], parts_a: Mapping[str, pd.DataFrame],
                     parts_b: Mapping[str, pd.DataFrame], recipe: Recipe) -> pd.DataFrame:
    """The val scores of each stage's best checkpoint of the run in ``run_dir``, then of ``others`` (the
    single-task models, the untrained start)."""
    probe, rows = copy.deepcopy(model), {}
    for i, stage in enumerate(stages, 1):
        load_checkpoint(Path(run_dir) / f"stage_{i}" / "best.pt", probe)
        rows[f"after stage {i} ({stage.name})"] = evaluate(probe, parts_a, parts_b, recipe).scores
    rows.update({name: evaluate(m, parts_a, parts_b, recipe).scores for name, m in others.items()})
    return pd.DataFrame(rows).T[COMPARED]


def joint_effect(table: pd.DataFrame) -> pd.DataFrame:
    """Per task, from a :func:`stage_comparison` table: its own stage, after the joint stage, its single-task
    model, and the joint stage's change against each (positive: the joint stage helps)."""
    joint = table.index[2]
    rows = {}
    for task, metric, own, single in (("Task A F1", "task_a_f1", 0, "gender only"),
                                      ("Task B top-1", "task_b_top1", 1, "verification only")):
        before, after, alone = table[metric].iloc[own], table.loc[joint, metric], table.loc[single, metric]
        rows[task] = {"own stage": before, "after joint": after, "single-task": alone,
                      "joint - own stage": after - before, "joint - single-task": after - alone}
    return pd.DataFrame(rows).T


# --------------------------------------------------------------------------------------------------- CSVs

def validate_predictions(frame: pd.DataFrame, columns: Sequence[str], vocabulary: Iterable[str]) -> None:
    """Raise ``SubmissionError`` on a wrong header, an empty or repeated image, a label outside ``vocabulary``
    or a similarity that is not a finite cosine."""
    if list(frame.columns) != list(columns):
        raise SubmissionError(f"wrong header: found {list(frame.columns)}, expected {list(columns)}.")
    images = frame["image"].astype(str)
    if frame.empty or (images == "").any() or frame["image"].isna().any():
        raise SubmissionError("the file has no rows, or rows without an image.")
    if images.duplicated().any():
        raise SubmissionError(f"repeated images: {images[images.duplicated()].tolist()[:5]}.")
    allowed = set(vocabulary)
    for column in columns[1:3]:
        if bad := sorted(set(frame[column].astype(str)) - allowed):
            raise SubmissionError(f"{column}: values outside the {len(allowed)} allowed: {bad[:5]}.")
    if "similarity" in frame:
        score = pd.to_numeric(frame["similarity"], errors="coerce")
        if not (np.isfinite(score) & score.between(-1.0001, 1.0001)).all():
            raise SubmissionError("similarity must be a finite cosine in [-1, 1].")


def _relative(paths: Iterable[str], root: Path) -> list[str]:
    return [Path(p).relative_to(root).as_posix() for p in paths]


def write_task_a(pred: pd.DataFrame, root: str | Path, out_dir: str | Path) -> Path:
    """Task A predictions ``image,predicted_label,true_label`` (image relative to the dataset ``root``, labels
    ``female``/``male``) in a new timestamped file, after :func:`validate_predictions`."""
    names = dict(enumerate(GENDERS))
    frame = pd.DataFrame({"image": _relative(pred["path"], Path(root)),
                          "predicted_label": pred["predicted"].map(names).to_numpy(),
                          "true_label": pred["label"].map(names).to_numpy()})
    validate_predictions(frame, TASK_A_COLUMNS, GENDERS)
    return write_csv(frame, "facecom_task_a", out_dir)


def write_task_b(matches: pd.DataFrame, identities: Iterable[str], root: str | Path, out_dir: str | Path) -> Path:
    """Task B matches ``image,predicted_identity,true_identity,similarity``: each distorted image, its nearest
    identity of the clean gallery and the cosine, after :func:`validate_predictions` (``identities``: the
    split's)."""
    frame = pd.DataFrame({"image": _relative(matches["path"], Path(root)), "predicted_identity": matches["predicted"],
                          "true_identity": matches["identity"], "similarity": matches["score"]})
    validate_predictions(frame, TASK_B_COLUMNS, identities)
    return write_csv(frame, "facecom_task_b", out_dir)
