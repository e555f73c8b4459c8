"""Notebooks 04-06's fine-tuning pipeline on real faces: a short CPU run on ../shared/realdata/att_faces.

The AT&T (ORL) database: 40 identities (folders s1..s40), 10 greyscale 92x112 PGM images each, read as RGB by
``helpers.imageio.load_rgb``; split 7 train / 3 test per identity. The model comes from
``backbones.create_model`` with random weights (nothing is downloaded), is trained with
``backbones.fit_stages`` (``engine.fit`` under a freezing policy) and the test accuracy is printed with the
settings used.

    python bench/realdata_att_finetune.py                              # resnet18, 64 px, 12 epochs
    python bench/realdata_att_finetune.py --model mobilenetv2_100 --epochs 15
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import config, engine, metrics
from helpers.datasets import FaceDataset, class_folders, holdout_split, make_loader
from helpers.models import backbones

RESULTS = Path(__file__).resolve().parent / "results" / "realdata_att_finetune.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18", help="a backbones.create_model name")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file for the figures and settings")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    config.seed_everything(args.seed)
    faces = class_folders(config.realdata("att_faces"))
    train_df, test_df = holdout_split(faces, frac=0.3, by="label", seed=args.seed)  # 7 / 3 per identity
    model = backbones.create_model(args.model, num_classes=faces["label"].nunique(), dropout=args.dropout)
    train_loader = make_loader(FaceDataset(train_df, model.info.transform(args.image_size, train=True)),
                               args.batch_size, shuffle=True, num_workers=0, seed=args.seed)
    test_loader = make_loader(FaceDataset(test_df, model.info.transform(args.image_size, train=False)),
                              args.batch_size, shuffle=False, num_workers=0)
    cfg = engine.TrainConfig(epochs=args.epochs, lr=args.lr, optimizer="adamw",
                             weight_decay=args.weight_decay, scheduler="cosine", warmup_epochs=1,
                             label_smoothing=args.label_smoothing, seed=args.seed, progress=False)
    start = time.perf_counter()
    history = backbones.fit_stages(model, train_loader, test_loader, cfg, config.new_run_dir("bench_att"),
                                   [backbones.Stage(args.epochs, "full")])
    train_s = time.perf_counter() - start
    logits, targets = engine.predict(model, test_loader, return_targets=True, progress=False)
    top = metrics.topk_accuracy(logits, targets, k=(1, 5))
    result = {"test_acc": top[1], "test_top5": top[5], "chance": 1 / faces["label"].nunique(),
              "best_epoch_acc": float(history["val_acc"].max()), "train_s": round(train_s, 1),
              "train_images_per_s": float(history["train_images_per_s"].median()),
              "images": {"train": len(train_df), "test": len(test_df)},
              "settings": {**{k: v for k, v in vars(args).items() if k != "out"}, "pretrained": False,
                           "freeze": "full", "optimizer": "adamw", "scheduler": "cosine, 1 warm-up epoch",
                           "device": str(config.device()), "threads": torch.get_num_threads()}}
    print(history[["epoch", "train_loss", "train_acc", "val_acc", "train_images_per_s"]].round(3).to_string(
        index=False))
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
