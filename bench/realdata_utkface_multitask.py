"""Notebook 08's multi-task pipeline on real faces: a short CPU run on ../shared/realdata/utkface_dev.

Reads ``labels.csv`` (authoritative: ``file,age,gender,race``; gender 0 male / 1 female; race 0 White,
1 Black, 2 Asian, 3 Indian, 4 Others), maps it with ``helpers.multitask.from_utkface`` (5-class race head,
ages binned with FairFace's bins and kept in years), splits 70/15/15 by race x gender, trains one model with
``engine.fit`` and reports the test split's gender and race accuracy, age MAE/RMSE, one-off accuracy,
worst-group accuracy and the gender calibration error, with the settings used.

    python bench/realdata_utkface_multitask.py                    # baseline CNN, 64 px, 6 epochs
    python bench/realdata_utkface_multitask.py --backbone resnet18 --epochs 4
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import config, engine
from helpers import multitask as mt
from helpers.datasets import read_csv_checked
from helpers.recipes import MultiTaskRecipe

RESULTS = Path(__file__).resolve().parent / "results" / "realdata_utkface_multitask.json"


def read_labels(folder: Path) -> pd.DataFrame:
    """``labels.csv`` as the frame ``utkface.read`` gives: [path, age, gender_idx, race_idx]."""
    labels = read_csv_checked(folder / "labels.csv", ["file", "age", "gender", "race"])
    return pd.DataFrame({"path": [str(folder / "images" / name) for name in labels["file"]],
                         "age": labels["age"], "gender_idx": labels["gender"], "race_idx": labels["race"]})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="baseline", help="'baseline' or a create_backbone name")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--age-mode", default="regression", choices=["regression", "classification"])
    parser.add_argument("--fraction", type=float, default=1.0, help="share of the 5,675 images to use")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (decode + augment)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file for the figures and settings")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    utkface = config.realdata("utkface_dev")
    recipe = replace(MultiTaskRecipe(), backbone=args.backbone, image_size=args.image_size,
                     epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, age_mode=args.age_mode,
                     fraction=args.fraction, seed=args.seed)
    labels = mt.label_space("utkface")
    splits = mt.make_splits({"all": mt.from_utkface(read_labels(utkface))}, recipe.split, recipe.fraction,
                            recipe.seed)
    loaders = mt.make_loaders(splits, recipe.image_size, recipe.batch_size, recipe.augment, recipe.seed,
                              num_workers=args.workers)
    model = mt.build_model(recipe, labels, splits["train"])
    run_dir = config.new_run_dir("bench_utkface_multitask")
    start = time.perf_counter()
    history = engine.fit(model, loaders["train"], loaders["val"], recipe.train_config(), run_dir,
                         loss_fn=mt.build_loss(recipe, labels, splits["train"]),
                         metrics_fn=mt.metrics_fn({"val": loaders["val"]}, recipe.age_mode))
    train_s = time.perf_counter() - start
    engine.load_checkpoint(run_dir / "best.pt", model)
    pred = mt.predictions(model, loaders["test"], recipe.age_mode)
    scores = mt.task_metrics(pred)
    reference = {"chance": mt.chance(splits["test"], labels), "no image": mt.no_image(splits["train"], splits["test"])}
    report = {"scores": scores, "references": reference,
              "fairness": mt.fairness_summary(pred, labels).astype(str).to_dict("index"),
              "settings": {**asdict(recipe), "workers": args.workers, "threads": torch.get_num_threads(),
                           "device": str(config.device()), **{k: len(v) for k, v in splits.items()}},
              "timing": {"train_s": round(train_s, 1), "epochs": len(history),
                         "best_epoch": int(history.loc[history["val_loss"].idxmin(), "epoch"])}}
    print(pd.DataFrame({"test": scores, **reference}).round(3).to_string())
    print(mt.fairness_summary(pred, labels).to_string())
    print(json.dumps(report["settings"], default=str))
    print(json.dumps(report["timing"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
