"""Full-profile training throughput and peak GPU memory of each notebook's recipe at its own image size and
batch (random weights, synthetic in-memory batches, so the figure is the model + engine, not the JPEG decoder).

    python bench/bench_recipes.py            # on a GPU; prints a Markdown table
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import classification, config, engine, recipes
from helpers.models import freezing

T4_GIB = 15.0  # usable memory of a 16 GB T4 (Colab / Kaggle)
CLASSIFIERS = {"03 ConvNeXt-T (scratch)": ("03_convnext_from_scratch", None),
               "04 ResNet-50 (seed)": ("04_resnet50", "seed"), "04 ResNet-50 (improved)": ("04_resnet50", "improved"),
               "05 MobileNetV2 (last 10 layers)": ("05_mobilenetv2", None),
               "06 InceptionResnetV1 (last 15 layers)": ("06_inception_resnet_v1", None)}


def build(notebook: str, variant: str | None, num_classes: int):
    """The recipe (random weights) and its model under the last stage's freezing (the stage that costs most)."""
    recipe = recipes.get(notebook, variant).with_values(pretrained=False)
    model = classification.build_model(recipe, num_classes)
    last = recipes.stages(recipe)[-1]
    freezing.freeze(model, last.freeze, last.trainable)
    return recipe, model, last


def measure(recipe, model, stage, num_classes: int, steps: int) -> dict:
    n = recipe.batch_size * steps
    x = torch.randn(n, 3, recipe.image_size, recipe.image_size)
    y = torch.randint(0, num_classes, (n,))
    loader = DataLoader(TensorDataset(x, y), batch_size=recipe.batch_size, pin_memory=True)
    cfg = replace(recipe.train, **{**stage.overrides, "epochs": 2, "progress": False, "early_stopping": None,
                                   "tensorboard": False})
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        history = engine.fit(model, loader, None, cfg, Path(tmp) / "run")
    return {"image_size": recipe.image_size, "batch": recipe.batch_size,
            "img_s": float(history.train_images_per_s.iloc[-1]),
            "alloc_gib": torch.cuda.max_memory_allocated() / 2**30,
            "reserved_gib": torch.cuda.max_memory_reserved() / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--classes", type=int, default=7000)
    args = parser.parse_args()
    if config.device().type != "cuda":
        sys.exit("bench_recipes measures GPU throughput and memory; run it on a CUDA machine.")
    print(f"{torch.cuda.get_device_name()}, {args.classes} classes, engine defaults (bf16 autocast, "
          "channels_last), recipe batch and image size\n")
    print("| notebook recipe | image px | batch | train img/s | peak alloc GiB | peak reserved GiB | fits a T4 |")
    print("|---|---|---|---|---|---|---|")
    for name, (notebook, variant) in CLASSIFIERS.items():
        recipe, model, stage = build(notebook, variant, args.classes)
        r = measure(recipe, model, stage, args.classes, args.steps)
        fits = "yes" if r["reserved_gib"] < T4_GIB else "no"
        print(f"| {name} | {r['image_size']} | {r['batch']} | {r['img_s']:.0f} | {r['alloc_gib']:.1f} | "
              f"{r['reserved_gib']:.1f} | {fits} |", flush=True)
        del model


if __name__ == "__main__":
    main()
