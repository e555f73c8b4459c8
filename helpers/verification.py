"""Face verification: embeddings, similarity, open-set identification, pair scoring and thresholds.

Scores are similarities (higher = more alike): ``cosine`` is the cosine similarity, ``euclidean`` is minus
the Euclidean distance. On L2-normalised embeddings the two rank every pair the same way
(``|a - b|^2 = 2 - 2 cos``); they differ on raw features.

Open-set identification (CMU 11-785 HW2P2): each unknown face gets the identity of its nearest gallery
entry, or ``n000000`` ("no correspondence") when even the nearest one scores below a threshold chosen on
``unknown_dev``. Queries are compared with the gallery chunk by chunk, so 35,000 x 7,000 scores never exist
at once.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from helpers import checkpoint, config, data, engine, metrics
from helpers.datasets.constants import HW2P2_NO_MATCH
from helpers.losses import ArcFace
from helpers.models import backbones, heads
from helpers.models.arcface import ArcFaceModel

METRICS = ("cosine", "euclidean")
GALLERY_MODES = ("mean", "best")
CHUNK_BYTES = 256 * 2**20  # score-matrix memory per chunk in `top1`


# ------------------------------------------------------------------------------------------------ embeddings

class FlipTTA(nn.Module):
    """The mean of a model's outputs on an image and on its horizontal mirror."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model(x) + self.model(x.flip(-1))) / 2


def embed(model: nn.Module, loader: Iterable, flip_tta: bool = True, amp: str = "auto", normalize: bool = True,
          progress: bool = True) -> torch.Tensor:
    """Embeddings (N, D) of every image in ``loader`` (float32, CPU), L2-normalised unless ``normalize=False``.

    ``model`` maps images to vectors: an embedding model, or a classifier's backbone. Batches are embedded
    one at a time in eval mode (``engine.predict``); ``flip_tta`` averages image and mirror.
    """
    wrapped = FlipTTA(model).train(model.training) if flip_tta else model  # predict restores the model's mode
    outputs = engine.predict(wrapped, loader, amp=amp, progress=progress)
    if outputs.ndim != 2:
        raise ValueError(f"The model returned outputs of shape {tuple(outputs.shape)}; an embedder returns (B, D).")
    return F.normalize(outputs, dim=1) if normalize else outputs


def embed_paths(model: nn.Module, paths: Sequence[str], image_size: int, norm: str = "imagenet",
                batch_size: int = 64, flip_tta: bool = True, amp: str = "auto", normalize: bool = True,
                num_workers: int | None = None, progress: bool = True) -> torch.Tensor:
    """Embeddings of image files, row ``i`` for ``paths[i]`` (eval transform at ``image_size``); an unreadable
    file is an error naming it, since every image needs its own embedding."""
    frame = pd.DataFrame({"path": list(paths)})
    loader = data.loader(frame, image_size, batch_size, train=False, target=None, norm=norm,
                         num_workers=num_workers)
    return embed(model, loader, flip_tta=flip_tta, amp=amp, normalize=normalize, progress=progress)


class EmbeddingStore:
    """Embeddings looked up by image path (``store[paths]`` -> (len(paths), D)), each file embedded once."""

    def __init__(self, paths: Sequence[str], embeddings: torch.Tensor):
        if len(paths) != len(embeddings):
            raise ValueError(f"{len(paths)} paths but {len(embeddings)} embeddings.")
        self.row = {str(path): i for i, path in enumerate(paths)}
        self.embeddings = embeddings

    def __len__(self) -> int:
        return len(self.embeddings)

    def __getitem__(self, paths: Iterable[str]) -> torch.Tensor:
        try:
            return self.embeddings[torch.tensor([self.row[str(p)] for p in paths], dtype=torch.long)]
        except KeyError as err:
            raise KeyError(f"{err.args[0]} was not embedded; include it in the paths given to embed_store.") from None


def image_paths(*frames: pd.DataFrame) -> list[str]:
    """The distinct image paths named by reader frames (columns ``path``, or ``path1``/``path2`` of pairs)."""
    columns = [frame[c] for frame in frames for c in ("path", "path1", "path2") if c in frame]
    return list(pd.unique(pd.concat(columns, ignore_index=True).astype(str))) if columns else []


def embed_store(model: nn.Module, paths: Iterable[str], image_size: int, norm: str = "imagenet",
                batch_size: int = 64, flip_tta: bool = True, amp: str = "auto", normalize: bool = False,
                progress: bool = True) -> EmbeddingStore:
    """Embed every distinct path once. Raw vectors by default (``normalize=False``), so that Euclidean scores
    see the model's own geometry; cosine scores normalise anyway."""
    unique = list(pd.unique(pd.Series(list(paths), dtype=str)))
    return EmbeddingStore(unique, embed_paths(model, unique, image_size, norm, batch_size, flip_tta, amp,
                                              normalize, progress=progress))


# ---------------------------------------------------------------------------------------------------- scores

def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}; choose one of {METRICS}.")


def pair_scores(a: torch.Tensor, b: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Score of each row of ``a`` with the same row of ``b``."""
    _check_metric(metric)
    if metric == "cosine":
        return F.cosine_similarity(a, b, dim=1)
    return -torch.linalg.vector_norm(a - b, dim=1)


def similarity(queries: torch.Tensor, gallery: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Every query against every gallery row, (Q, G); for large sets use :func:`top1`."""
    _check_metric(metric)
    if metric == "cosine":
        return F.normalize(queries, dim=1) @ F.normalize(gallery, dim=1).T
    return -torch.cdist(queries, gallery)


def _block_scores(queries: torch.Tensor, gallery: torch.Tensor, gallery_sq: torch.Tensor | None) -> torch.Tensor:
    """One block of scores in a single (Q, G) buffer: cosine if ``gallery_sq`` is None (rows already unit),
    else minus the Euclidean distance from ``|q|^2 + |g|^2 - 2 q.g``, computed in place."""
    if gallery_sq is None:
        return F.normalize(queries, dim=1) @ gallery.T
    scores = (queries @ gallery.T).mul_(-2).add_(queries.square().sum(1, keepdim=True)).add_(gallery_sq)
    return scores.clamp_(min=0).sqrt_().neg_()


def top1(queries: torch.Tensor, gallery: torch.Tensor, metric: str = "cosine", chunk_bytes: int = CHUNK_BYTES,
         progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index, score)`` of each query's best gallery row, computed ``chunk_bytes`` of scores at a time
    (peak memory about one block; bench/bench_similarity.py measures it)."""
    _check_metric(metric)
    queries, gallery = queries.float(), gallery.float()
    gallery, gallery_sq = ((F.normalize(gallery, dim=1), None) if metric == "cosine"
                           else (gallery, gallery.square().sum(1)))
    rows = max(1, chunk_bytes // (4 * max(len(gallery), 1)))
    index = torch.empty(len(queries), dtype=torch.long)
    score = torch.empty(len(queries))
    starts = range(0, len(queries), rows)
    for start in tqdm(starts, desc="top-1", leave=False, disable=not progress or len(starts) < 2):
        best = _block_scores(queries[start:start + rows], gallery, gallery_sq).max(dim=1)
        score[start:start + rows], index[start:start + rows] = best.values, best.indices
    return index, score


# --------------------------------------------------------------------------------------- open-set identification

def build_gallery(embeddings: torch.Tensor, identities: Sequence[str], mode: str = "mean",
                  ) -> tuple[torch.Tensor, np.ndarray]:
    """The gallery from ``known/``: one mean embedding per identity (``"mean"``, identities sorted,
    re-normalised when the inputs are unit vectors) or every image as it is (``"best"``: a query then
    matches its best-scoring image)."""
    if mode not in GALLERY_MODES:
        raise ValueError(f"mode={mode!r}; choose one of {GALLERY_MODES}.")
    identities = np.asarray(identities, dtype=str)
    if len(identities) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings but {len(identities)} identities.")
    if mode == "best":
        return embeddings, identities
    names, codes = np.unique(identities, return_inverse=True)
    sums = torch.zeros(len(names), embeddings.shape[1]).index_add_(0, torch.as_tensor(codes), embeddings.float())
    means = sums / torch.as_tensor(np.bincount(codes), dtype=torch.float32)[:, None]
    unit = torch.allclose(embeddings.norm(dim=1), torch.ones(len(embeddings)), atol=1e-3)
    return (F.normalize(means, dim=1) if unit else means), names


def identify(queries: torch.Tensor, gallery: torch.Tensor, gallery_identities: Sequence[str],
             threshold: float = -np.inf, metric: str = "cosine", chunk_bytes: int = CHUNK_BYTES) -> pd.DataFrame:
    """Per query: ``nearest`` gallery identity, its ``score``, and ``identity``: ``nearest`` when
    ``score >= threshold``, else ``n000000``."""
    index, score = top1(queries, gallery, metric, chunk_bytes)
    nearest = np.asarray(gallery_identities, dtype=str)[index.numpy()]
    score = score.numpy().astype(np.float64)
    return pd.DataFrame({"nearest": nearest, "score": score,
                         "identity": np.where(score >= threshold, nearest, HW2P2_NO_MATCH)})


def threshold_curve(nearest: Sequence[str], scores: Sequence[float], truth: Sequence[str]) -> pd.DataFrame:
    """Open-set accuracy for every distinct decision: thresholds below, between and above the sorted
    ``scores`` (a query is given ``nearest`` when its score clears the threshold, else ``n000000``)."""
    nearest, truth = np.asarray(nearest, dtype=str), np.asarray(truth, dtype=str)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    right_if_accepted = (nearest == truth)[order]
    right_if_rejected = (truth == HW2P2_NO_MATCH)[order]
    levels = np.unique(sorted_scores)
    pad = max(1e-6, 0.01 * (levels[-1] - levels[0]))
    thresholds = np.concatenate([[levels[0] - pad], (levels[:-1] + levels[1:]) / 2, [levels[-1] + pad]])
    rejected = np.searchsorted(sorted_scores, thresholds, side="left")
    rejected_right = np.concatenate([[0], np.cumsum(right_if_rejected)])
    accepted_right = right_if_accepted.sum() - np.concatenate([[0], np.cumsum(right_if_accepted)])
    accuracy = (rejected_right[rejected] + accepted_right[rejected]) / len(scores)
    return pd.DataFrame({"threshold": thresholds, "accuracy": accuracy, "rejected": rejected / len(scores)})


def choose_threshold(nearest: Sequence[str], scores: Sequence[float], truth: Sequence[str],
                     ) -> tuple[float, float, pd.DataFrame]:
    """``(threshold, accuracy, curve)``: the middle of the best plateau of :func:`threshold_curve`
    (on ``unknown_dev``), to be applied unchanged to ``unknown_test``."""
    curve = threshold_curve(nearest, scores, truth)
    best = np.flatnonzero(curve["accuracy"].to_numpy() == curve["accuracy"].max())
    row = curve.iloc[best[len(best) // 2]]
    return float(row["threshold"]), float(row["accuracy"]), curve


def cross_validated_accuracy(nearest: Sequence[str], scores: Sequence[float], truth: Sequence[str], folds: int = 2,
                             seed: int = 0) -> float:
    """Open-set accuracy with the threshold chosen on the other folds (stratified by known/unknown), so the
    number is not flattered by choosing and scoring on the same queries."""
    nearest, truth = np.asarray(nearest, dtype=str), np.asarray(truth, dtype=str)
    scores = np.asarray(scores, dtype=np.float64)

    def choose(fit: np.ndarray) -> float:
        return choose_threshold(nearest[fit], scores[fit], truth[fit])[0]

    def right(test: np.ndarray, threshold: float) -> np.ndarray:
        return np.where(scores[test] >= threshold, nearest[test], HW2P2_NO_MATCH) == truth[test]

    accuracies, _ = metrics.cross_validate_threshold(truth == HW2P2_NO_MATCH, choose, right, folds, seed)
    return float(np.mean(accuracies))


def open_set_report(store: EmbeddingStore, known: pd.DataFrame, queries: pd.DataFrame, metric: str = "cosine",
                    gallery: str = "mean") -> tuple[dict[str, float], pd.DataFrame]:
    """Open-set identification of labelled ``queries`` (``unknown_dev``: path, identity) against ``known``.

    Returns ``(summary, curve)``: the threshold chosen on ``queries`` and the accuracy there, the 2-fold
    cross-validated accuracy, rank-1 accuracy of the queries whose identity is known, the share of
    ``n000000`` queries; and the accuracy-vs-threshold curve.
    """
    centres, names = build_gallery(store[known["path"]], known["identity"].to_numpy(), gallery)
    found = identify(store[queries["path"]], centres, names, metric=metric)
    truth = queries["identity"].to_numpy(dtype=str)
    threshold, accuracy, curve = choose_threshold(found["nearest"], found["score"], truth)
    is_known = truth != HW2P2_NO_MATCH
    summary = {"open_set_acc": accuracy, "open_set_acc_cv": cross_validated_accuracy(found["nearest"],
                                                                                      found["score"], truth),
               "rank1_known": float(np.mean(found["nearest"].to_numpy()[is_known] == truth[is_known])),
               "no_match_share": float(np.mean(~is_known)), "threshold": threshold}
    return summary, curve


def map_queries(store: EmbeddingStore, known: pd.DataFrame, queries: pd.DataFrame, threshold: float,
                metric: str = "cosine", gallery: str = "mean") -> pd.DataFrame:
    """:func:`identify` for the images of ``queries`` (e.g. ``unknown_test``) against the gallery of ``known``."""
    centres, names = build_gallery(store[known["path"]], known["identity"].to_numpy(), gallery)
    return identify(store[queries["path"]], centres, names, threshold, metric)


# ----------------------------------------------------------------------------------------------------- pairs

def _check_pairs(pairs: pd.DataFrame) -> None:
    if missing := {"path1", "path2"} - set(pairs.columns):
        raise ValueError(f"pairs frame has columns {list(pairs.columns)}, missing {sorted(missing)}; expected "
                         "path1, path2 (from helpers.datasets.hw2p2.read_pairs).")


def store_pair_scores(store: EmbeddingStore, pairs: pd.DataFrame, metric: str = "cosine") -> np.ndarray:
    """The score of every pair (columns ``path1``, ``path2``) from embeddings already in ``store``."""
    _check_pairs(pairs)
    return pair_scores(store[pairs["path1"]], store[pairs["path2"]], metric).numpy().astype(np.float64)


# ------------------------------------------------------------------------------------------------ comparison

def compare(stores: Mapping[str, EmbeddingStore], known: pd.DataFrame, queries: pd.DataFrame,
            pairs: pd.DataFrame | None = None, metric_names: Sequence[str] = METRICS,
            gallery: str = "mean") -> pd.DataFrame:
    """One row per (model, metric): open-set identification of ``queries`` against ``known`` and, when a
    labelled ``pairs`` frame (``match`` column) is given, AUC / EER / TAR@FAR / k-fold accuracy of the pairs."""
    rows = []
    for name, store in stores.items():
        for metric in metric_names:
            row = {"model": name, "metric": metric, **open_set_report(store, known, queries, metric, gallery)[0]}
            if pairs is not None:
                report = metrics.verification_report(pairs["match"], store_pair_scores(store, pairs, metric))
                row.update({f"pairs_{key}": value for key, value in report.items()})
            rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "metric"])


# ----------------------------------------------------------------------------------------------- models

def init_backbone(run_dir: Path, drop_path_rate: float = 0.0) -> tuple[nn.Module, backbones.ModelInfo]:
    """The backbone of a notebook-03 run (its best checkpoint, EMA weights when it kept them), built from the
    model and norm its ``config.json`` recorded."""
    meta = json.loads(next(run_dir.glob("**/config.json")).read_text())["meta"]
    backbone, info = backbones.create_backbone(meta["model"], norm=meta["norm"], drop_path_rate=drop_path_rate)
    weights = checkpoint.model_weights(checkpoint.load_checkpoint(run_dir / "best.pt"))
    backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in weights.items() if k.startswith("backbone.")})
    return backbone, info


def build_models(recipe, num_classes: int, init_dir: Path | None = None,
                 ) -> tuple[backbones.FaceClassifier, ArcFaceModel]:
    """``(softmax, arcface)`` for notebook 07: the same starting backbone (random, or ``init_dir``'s
    notebook-03 weights) under a linear softmax head, and under the embedding head with ArcFace's centres."""
    def backbone() -> tuple[nn.Module, backbones.ModelInfo]:
        config.seed_everything(recipe.train.seed)
        if init_dir is None:
            return backbones.create_backbone(recipe.backbone, drop_path_rate=recipe.drop_path_rate)
        return init_backbone(init_dir, recipe.drop_path_rate)

    trunk, info = backbone()
    softmax = backbones.FaceClassifier(trunk, heads.LinearHead(trunk.num_features, num_classes), info)
    trunk, _ = backbone()
    arcface = ArcFaceModel(trunk, heads.EmbeddingHead(trunk.num_features, recipe.embedding_dim, recipe.dropout),
                           ArcFace(recipe.embedding_dim, num_classes, s=recipe.s, m=recipe.m,
                                   easy_margin=recipe.easy_margin))
    return softmax, arcface


def train_config(recipe, init_dir: Path | None) -> engine.TrainConfig:
    """The recipe's ``TrainConfig``; the body trains at ``backbone_lr_scale`` only when fine-tuning."""
    scale = recipe.backbone_lr_scale
    return replace(recipe.train, param_groups={"backbone.": scale} if init_dir is not None and scale != 1 else {})


def train(models: Mapping[str, nn.Module], loaders: Mapping, recipe, run_dir: Path, resume: bool = False,
          init_dir: Path | None = None) -> dict[str, pd.DataFrame]:
    """Fit each model (``softmax``, ``arcface``) in ``run_dir/<name>`` for the same epochs from the same start,
    the ArcFace model with its margin loss; each ends on its best checkpoint."""
    cfg, meta = train_config(recipe, init_dir), {**recipe.record(), "init_from": str(init_dir)}
    return {name: engine.fit_best(model, loaders["train"], loaders["dev"], cfg, run_dir / name, resume,
                                  loss_fn=getattr(model, "loss", None), meta=meta)
            for name, model in models.items()}
