"""Notebook 10's pipeline on real faces at CPU scale, with ../shared/realdata standing in for Adience and CelebA.

Adience and CelebA (beyond a 32-image sample) are not in ../shared/realdata, so:

- UTKFace (``utkface_dev``: faces with gender and age in years) stands in for Adience. It names no subjects and
  its de-duplicated faces are nearly all different people, so each image is its own subject; ages go to the
  nearest of Adience's 8 groups (the gaps between groups to the nearer group, ties to the younger). The five
  folds are subject-disjoint; the notebook's ``direct`` (gender) and ``multitask`` (gender + age) experiments
  run on the first ``--folds`` test folds.
- FACECOM Task A (``facecom_task_a``: gender folders) stands in too, its subjects read from the LFW-style file
  names (``First_Last_0001.jpg``), so one person's photos never straddle training and test.
- The pre-training effect: a gender stage on UTKFace (the notebook's CelebA stage; CelebA's 32-image sample is
  too small to pre-train on), then FACECOM's folds, against FACECOM's folds directly.
- The Optuna Hyperband study of the notebook, a few trials, on FACECOM's first training folds.

No ImageNet weights are available offline here: every model starts from random weights (the notebook's full
profile starts from ImageNet's), so the absolute figures sit below what the notebook reaches on a GPU.

    python bench/realdata_adience.py                  # resnet10t, 48 px, 2 test folds, 4 trials
    python bench/realdata_adience.py --folds 5 --epochs 8
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import adience, config, recipes, search
from helpers.datasets import FaceSet, class_folders, read_csv_checked
from helpers.datasets.constants import ADIENCE_FOLDS

RESULTS = Path(__file__).resolve().parent / "results" / "realdata_adience.json"
AGE_SPANS = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 200))  # Adience's groups


def age_group(years: np.ndarray) -> np.ndarray:
    """The nearest Adience age group of each age in years (ties: the younger group)."""
    lo, hi = np.array(AGE_SPANS).T
    distance = np.maximum(np.maximum(lo[None] - years[:, None], 0), years[:, None] - hi[None])
    return distance.argmin(1)


def as_folds(name: str, root: Path, frame: pd.DataFrame, seed: int) -> FaceSet:
    """``frame`` [path, user_id, gender_idx, age_idx] dealt into 5 subject-disjoint folds, as Adience's reader
    returns them."""
    subjects = frame["user_id"].unique()
    fold_of = dict(zip(np.random.default_rng(seed).permutation(subjects), np.arange(len(subjects)) % ADIENCE_FOLDS,
                       strict=True))
    frame = frame.assign(fold=frame["user_id"].map(fold_of))
    return FaceSet(name, root, {f"fold_{k}": frame[frame["fold"] == k] for k in range(ADIENCE_FOLDS)})


def utkface(images: int, seed: int) -> FaceSet:
    """``images`` UTKFace faces (seeded sample) as Adience-like folds, each image its own subject."""
    root = config.realdata("utkface_dev")
    labels = read_csv_checked(root / "labels.csv", ["file", "age", "gender"])
    labels = labels.sample(n=min(images, len(labels)), random_state=seed)
    frame = pd.DataFrame({"path": [str(root / "images" / f) for f in labels["file"]], "user_id": labels["file"],
                          "gender_idx": labels["gender"].to_numpy(),  # 0 male, 1 female: Adience's m, f order
                          "age_idx": age_group(labels["age"].to_numpy())})
    return as_folds("utkface", root, frame.reset_index(drop=True), seed)


def facecom(seed: int) -> FaceSet:
    """FACECOM Task A's training faces as Adience-like folds, subjects from the file names (no age: -1)."""
    root = config.realdata("facecom_task_a")
    faces = class_folders(root / "Task_A" / "train")  # identity = the gender folder
    frame = pd.DataFrame({"path": faces["path"], "user_id": [Path(p).stem.rsplit("_", 1)[0] for p in faces["path"]],
                          "gender_idx": (faces["identity"] == "female").astype("int64"), "age_idx": -1})
    return as_folds("facecom_task_a", root, frame, seed)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="the rate when there is no search")
    parser.add_argument("--folds", type=int, default=2, help="test folds run (of 5)")
    parser.add_argument("--trials", type=int, default=4, help="Optuna trials on FACECOM (0: no search)")
    parser.add_argument("--search-epochs", type=int, default=3)
    parser.add_argument("--utkface-images", type=int, default=2500, help="UTKFace faces used (of 5,675)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    recipe = recipes.get("10_adience_transfer").with_values(
        model=args.model, pretrained=False, image_size=args.image_size, batch_size=args.batch_size,
        epochs=args.epochs, lr=args.lr, head=(256, 128), dropout=0.2, warmup_epochs=0.0, backbone_lr_scale=1.0,
        num_workers=args.workers, pipeline="cpu", folds=args.folds, trials=args.trials,
        search_epochs=args.search_epochs, progress=False, tensorboard=False, seed=args.seed,
        search_space={"lr": ("log", 3e-4, 1e-2), "head_units": ("choice", (128, 256, 512)),
                      "dropout": ("float", 0.0, 0.5)})
    run_dir = config.new_run_dir("bench_realdata_adience")
    report, timing, start = {}, {}, time.perf_counter()
    faces = {"utkface": utkface(args.utkface_images, args.seed), "facecom_task_a": facecom(args.seed)}
    report["data"] = {name: {k: {"images": len(fold), "subjects": fold["user_id"].nunique(),
                                 "female share": round(float(fold["gender_idx"].mean()), 3)}
                             for k, fold in f.splits.items()} for name, f in faces.items()}

    t = time.perf_counter()
    parts = adience.split(faces["facecom_task_a"], 0, recipe.val_fraction, args.seed)
    study = adience.run_search(recipe, parts, run_dir)
    report["search"] = search.table(study).reset_index().to_dict("records")
    searched = adience.with_best(recipe, study)
    timing["search_s"] = time.perf_counter() - t

    t = time.perf_counter()
    utk = adience.cross_validate(searched.with_values(experiments=("direct", "multitask")), faces["utkface"],
                                 run_dir / "utkface")
    timing["utkface_cv_s"] = time.perf_counter() - t

    t = time.perf_counter()
    stage = {"train": pd.concat([adience.targets(f) for f in faces["utkface"].splits.values()])}
    stage["train"], stage["val"] = adience.subject_split(stage["train"], 0.1, args.seed)
    model, info = adience.build_model(searched, ("gender",))
    adience.fit(model, info, searched, stage, ("gender",), run_dir / "utkface_gender")
    facecom_cv = adience.cross_validate(searched.with_values(experiments=("direct", "celeba")),
                                        faces["facecom_task_a"], run_dir / "facecom", celeba=run_dir /
                                        "utkface_gender" / "best.pt")
    facecom_cv["pretrained on UTKFace gender"] = facecom_cv.pop("celeba")
    timing["pretrain_and_facecom_cv_s"] = time.perf_counter() - t

    for name, cv in (("utkface", utk), ("facecom_task_a", facecom_cv)):
        refs = pd.DataFrame([r.references for r in next(iter(cv.values()))]).mean()
        report[name] = {"folds": adience.fold_scores(cv).reset_index().to_dict("records"),
                        "summary": adience.formatted(adience.summary(cv)).to_dict("index"),
                        "references": refs[[k for k in refs.index if "age" not in k or name == "utkface"]].to_dict()}
        print(f"\n{name}\n{adience.formatted(adience.summary(cv)).to_string()}")
    print("\nsearch (FACECOM fold 0's training folds)\n" + search.table(study).round(4).to_string())
    timing["total_s"] = time.perf_counter() - start
    report["settings"] = {**{k: v for k, v in searched.record().items() if k != "train"},
                          "train": searched.record()["train"], "threads": torch.get_num_threads(),
                          "device": str(config.device()), "workers": args.workers}
    report["timing"] = {k: round(v, 1) for k, v in timing.items()}
    print(json.dumps(report["timing"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
