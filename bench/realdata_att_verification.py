"""Notebook 07's pipeline on real faces: ArcFace trained on 30 AT&T (ORL) identities, then verification and
open-set identification on the 10 identities it never saw.

AT&T: 40 identities x 10 greyscale PGM images (read as RGB by ``helpers.imageio.load_rgb``). 30 identities
(seeded draw) train an ``ArcFaceRecipe`` model from scratch (no downloads); 20% of their images are its dev
split. The 10 held-out identities give
* pairs: every pair of their 100 images (450 genuine, 4,500 impostor) -> AUC, EER, TAR@FAR, 10-fold accuracy;
* open-set trials: ``--enrolled`` of the 10 are enrolled with ``--gallery-images`` images each, their other
  images are queries, and every image of the remaining identities is an impostor query whose right answer is
  ``n000000``; the threshold is chosen on one half of the queries and scored on the other (``_cv``), averaged
  over ``--trials`` random draws.
The same backbone + head with random weights is the baseline.

    python bench/realdata_att_verification.py [--epochs 30] [--image-size 64] [--s 16]
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import config, data, engine, metrics, transforms, verification
from helpers.datasets import class_folders, holdout_split
from helpers.datasets.constants import HW2P2_NO_MATCH
from helpers.recipes import ArcFaceRecipe


def split_identities(frame: pd.DataFrame, n_train: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training identities (labels renumbered 0..n_train-1) and the held-out rest."""
    names = np.random.default_rng(seed).permutation(sorted(frame.identity.unique()))
    train = frame[frame.identity.isin(names[:n_train])].copy()
    train["label"] = pd.factorize(train.identity, sort=True)[0]
    return train, frame[~frame.identity.isin(names[:n_train])].copy()


def all_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    rows = [(a.path, b.path, int(a.identity == b.identity))
            for a, b in combinations(frame.itertuples(index=False), 2)]
    return pd.DataFrame(rows, columns=["path1", "path2", "match"])


def open_set_trial(frame: pd.DataFrame, n_enrolled: int, n_gallery: int,
                   rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(known, queries)``: enrolled identities' first draws as the gallery, everything else as queries
    (impostors labelled ``n000000``)."""
    enrolled = set(rng.choice(sorted(frame.identity.unique()), n_enrolled, replace=False))
    shuffled = frame.sample(frac=1.0, random_state=int(rng.integers(2**31)))
    rank = shuffled.groupby("identity").cumcount()
    in_gallery = shuffled.identity.isin(enrolled) & (rank < n_gallery)
    queries = shuffled[~in_gallery].copy()
    queries.loc[~queries.identity.isin(enrolled), "identity"] = HW2P2_NO_MATCH
    return shuffled[in_gallery], queries


def evaluate(store: verification.EmbeddingStore, heldout: pd.DataFrame, args) -> dict[str, float]:
    pairs = all_pairs(heldout)
    report = metrics.verification_report(pairs.match, verification.store_pair_scores(store, pairs, "cosine"))
    rng = np.random.default_rng(args.seed)
    trials = pd.DataFrame([verification.open_set_report(store, *open_set_trial(heldout, args.enrolled,
                                                                               args.gallery_images, rng))[0]
                           for _ in range(args.trials)])
    return {"pairs_auc": report["auc"], "pairs_eer": report["eer"], "eer_threshold": report["eer_threshold"],
            "tar@far=1e-2": report["tar@far=0.01"], "tar@far=1e-3": report["tar@far=0.001"],
            "pairs_10fold_acc": report["kfold_accuracy"], "open_set_acc_cv": trials.open_set_acc_cv.mean(),
            "open_set_acc_cv_std": trials.open_set_acc_cv.std(), "open_set_acc_in_sample": trials.open_set_acc.mean(),
            "rank1_known": trials.rank1_known.mean(), "no_match_share": trials.no_match_share.mean()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="scratch/convnext_atto")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--s", type=float, default=16.0)
    parser.add_argument("--m", type=float, default=0.5)
    parser.add_argument("--augment", default="imagenet")
    parser.add_argument("--train-identities", type=int, default=30)
    parser.add_argument("--enrolled", type=int, default=6, help="held-out identities put in the gallery")
    parser.add_argument("--gallery-images", type=int, default=2, help="gallery images per enrolled identity")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = config.realdata("att_faces")
    train, heldout = split_identities(class_folders(folder), args.train_identities, args.seed)
    fit_part, dev_part = holdout_split(train, frac=0.2, by="identity", seed=args.seed)
    recipe = replace(ArcFaceRecipe().for_profile(config.PROFILES["demo"]), backbone=args.backbone,
                     epochs=args.epochs, image_size=args.image_size, batch_size=args.batch_size, lr=args.lr,
                     s=args.s, m=args.m, augment=args.augment, seed=args.seed)
    loaders = data.make_loaders({"train": fit_part, "dev": dev_part}, recipe.augment, recipe.image_size,
                                recipe.batch_size)
    _, model = recipe.build_models(args.train_identities)
    untrained = copy.deepcopy(model.embedder)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        history = engine.fit(model, loaders["train"], loaders["dev"], recipe.train_config(progress=False),
                             Path(tmp) / "run", loss_fn=model.loss)
        engine.load_checkpoint(Path(tmp) / "run" / "best.pt", model)
    train_seconds = time.time() - start
    transform = transforms.build(recipe.augment, recipe.image_size, train=False)
    rows = {name: evaluate(verification.embed_store(embedder, heldout.path, transform, progress=False), heldout, args)
            for name, embedder in {"ArcFace (trained)": model.embedder, "random weights": untrained}.items()}
    print(history[["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"]].tail(3).to_string(index=False))
    print(f"\nAT&T: trained on {args.train_identities} identities ({len(fit_part)} images, dev {len(dev_part)}); "
          f"evaluated on the {heldout.identity.nunique()} held-out identities ({len(heldout)} images). "
          f"{recipe.backbone} + {recipe.embedding_dim}-d head, ArcFace s={recipe.s} m={recipe.m}, "
          f"{recipe.image_size} px, '{recipe.augment}' augmentation, {recipe.epochs} epochs, AdamW lr {recipe.lr:g}, "
          f"batch {recipe.batch_size}; cosine scores, flip TTA, '{recipe.gallery}' gallery; open set: "
          f"{args.enrolled} enrolled x {args.gallery_images} gallery images, {args.trials} trials. "
          f"Training {train_seconds:.0f} s on {config.device()} ({torch.get_num_threads()} threads); "
          f"best dev nearest-centre accuracy {history.val_acc.max():.3f}.\n")
    print(pd.DataFrame(rows).T.round(3).to_string())


if __name__ == "__main__":
    main()
