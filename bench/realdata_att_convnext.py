"""Notebook 03's pipeline on real faces: the hand-written ConvNeXt trained from scratch on AT&T (ORL).

40 identities, 10 greyscale PGM images each, split 7/3 per identity; the recipe is ConvNeXtRecipe's demo-profile
sizing (convnext_atto, AdamW + warm-up/cosine, label smoothing, EMA) at a CPU-friendly image size.

    python bench/realdata_att_convnext.py [--epochs 40] [--image-size 64]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import config, data, engine, metrics
from helpers.datasets import class_folders, holdout_split
from helpers.recipes import ConvNeXtRecipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    folder = config.realdata("att_faces")
    frame = class_folders(folder)
    train, test = holdout_split(frame, frac=0.3, by="identity", seed=0)  # 7/3 per identity
    recipe = replace(ConvNeXtRecipe().for_profile(config.PROFILES["demo"]), image_size=args.image_size,
                     batch_size=args.batch_size, epochs=args.epochs)
    loaders = data.make_loaders({"train": train, "test": test}, recipe.augment, recipe.image_size,
                                recipe.batch_size)
    model = recipe.build_model(num_classes=frame.identity.nunique())
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        history = engine.fit(model, loaders["train"], loaders["test"], recipe.train_config(progress=False),
                             Path(tmp) / "run")
        engine.load_checkpoint(Path(tmp) / "run" / "last.pt", model)
    logits, targets = engine.predict(model, loaders["test"], return_targets=True, progress=False)
    print(history[["epoch", "lr", "train_loss", "train_acc", "val_acc", "train_images_per_s"]].tail(5).to_string())
    print(f"\nAT&T, {len(train)} train / {len(test)} test images, 40 identities (chance 2.5%): "
          f"{recipe.model} {recipe.image_size} px, {recipe.epochs} epochs, AdamW lr {recipe.lr:g}, "
          f"batch {recipe.batch_size}, augment '{recipe.augment}', EMA {recipe.ema_decay}")
    print(f"test accuracy (last epoch, EMA weights): {metrics.accuracy(logits, targets):.3f}; "
          f"best epoch val_acc {history.val_acc.max():.3f}; {time.time() - start:.0f} s on {config.device()}")


if __name__ == "__main__":
    main()
