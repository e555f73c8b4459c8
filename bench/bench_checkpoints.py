"""Checkpoint sizes of each notebook's full recipe, before and after ``best.pt`` became weights only, and what a
full run of each notebook writes under ``/kaggle/working`` (Kaggle keeps 20 GB).

Sizes are measured by saving real checkpoints (random weights, one optimizer step so the optimizer holds its
state) of the recipe's model with the competition's class count; the image cache is the packed-JPEG cache of
the GPU input path (``helpers.packed``), measured on real faces re-encoded at the recipe's size.

    python bench/bench_checkpoints.py        # ~1 min on 2 CPU cores
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import checkpoint, classification, config, recipes, verification
from helpers.models import freezing
from helpers.optim import build_optimizer

GB = 1e9
IMAGES = {"hw2p2": 140_000 + 35_000 + 35_000, "cs405": 140_000 + 35_000, "fairface": 97_698}  # all splits
CLASSES = {"hw2p2": 7_000, "cs405": 7_000}
RESULTS = Path(__file__).resolve().parent / "results" / "checkpoint_sizes.json"


def saved_bytes(state: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


def checkpoint_sizes(model: torch.nn.Module, recipe: recipes.Recipe) -> dict[str, int]:
    """Bytes of the old best.pt (everything), the new best.pt (model + EMA) and last.pt (everything)."""
    cfg = recipe.train
    optimizer = build_optimizer(model.named_parameters(), cfg)
    for p in model.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    optimizer.step()
    ema = {k: v.clone() for k, v in model.state_dict().items()} if cfg.ema_decay is not None else None
    everything = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "ema": ema, "history": [],
                  "epoch": 1, "metrics": {}, "config": {}, "loss_fn": None}
    weights = {k: everything[k] for k in checkpoint.WEIGHT_KEYS}
    return {"last": saved_bytes(everything), "best_before": saved_bytes(everything), "best_after": saved_bytes(weights)}


def jpeg_bytes(size: int) -> float:
    """Mean bytes of a real face re-encoded as a ``size`` px JPEG (quality 95, as the packed cache stores it)."""
    folder = config.realdata("pins_dev")
    paths = sorted(folder.rglob("*.jpg"))[:50]
    total = 0
    for path in paths:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize((size, size)).save(buffer, "JPEG", quality=95)
        total += buffer.getbuffer().nbytes
    return total / len(paths)


def classifier_rows() -> list[dict]:
    rows = []
    for notebook, dataset in (("03_convnext_from_scratch", "hw2p2"), ("04_resnet50", "cs405"),
                              ("05_mobilenetv2", "cs405"), ("06_inception_resnet_v1", "cs405")):
        recipe = recipes.get(notebook).with_values(pretrained=False)
        model = classification.build_model(recipe, CLASSES[dataset])
        stages = recipes.stages(recipe)
        freezing.freeze(model, stages[-1].freeze, stages[-1].trainable)
        sizes = checkpoint_sizes(model, recipe)
        rows.append({"notebook": notebook, "dataset": dataset, "stages": len(stages), "runs": 1,
                     "image_size": recipe.image_size, **sizes})
    return rows


def arcface_row() -> dict:
    recipe = recipes.get("07_arcface_verification")
    softmax, arcface = verification.build_models(recipe, CLASSES["hw2p2"])
    both = [checkpoint_sizes(m, recipe) for m in (softmax, arcface)]
    return {"notebook": "07_arcface_verification", "dataset": "hw2p2", "stages": 1, "runs": 2,
            "image_size": recipe.image_size, **{k: sum(s[k] for s in both) for k in both[0]}}


def attributes_row() -> dict:
    """Notebook 08: the baseline CNN and the ResNet-34 multi-task models (7 FairFace races, age regression)."""
    from helpers.models import multitask

    both = []
    for variant in ("baseline", "fairface_paper"):
        recipe = recipes.get("08_multitask_fairface", variant).with_values(pretrained=False)
        both.append(checkpoint_sizes(multitask.create(recipe.backbone, 7, recipe.age_mode), recipe))
    return {"notebook": "08_multitask_fairface", "dataset": "fairface", "stages": 1, "runs": 2,
            "image_size": recipes.get("08_multitask_fairface").image_size,
            **{k: sum(s[k] for s in both) for k in both[0]}}


def totals(row: dict, per_image: float) -> dict:
    """GB written under /kaggle/working by a full run: every stage's last.pt and best.pt (the run's own best.pt
    is a hard link), the packed image cache, CSVs and logs (a few MB)."""
    per_stage = row["last"] + row["best_after"]
    cache = IMAGES[row["dataset"]] * per_image
    return {"checkpoints_before_gb": row["stages"] * (row["last"] + row["best_before"]) / GB,
            "checkpoints_after_gb": row["stages"] * per_stage / GB, "cache_gb": cache / GB,
            "working_after_gb": (row["stages"] * per_stage + cache) / GB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    torch.set_num_threads(2)
    rows = [*classifier_rows(), arcface_row(), attributes_row()]
    per_image = {size: jpeg_bytes(size) for size in sorted({r["image_size"] for r in rows})}
    print("| notebook | best.pt before | best.pt after | last.pt | checkpoints before / after | image cache | "
          "writes under /kaggle/working |\n|---|---|---|---|---|---|---|")
    for row in rows:
        row.update(totals(row, per_image[row["image_size"]]))
        print(f"| {row['notebook']} ({row['runs']} run(s), {row['stages']} stage(s)) | "
              f"{row['best_before'] / 1e6:.0f} MB | {row['best_after'] / 1e6:.0f} MB | {row['last'] / 1e6:.0f} MB | "
              f"{row['checkpoints_before_gb']:.2f} / {row['checkpoints_after_gb']:.2f} GB | {row['cache_gb']:.2f} GB | "
              f"{row['working_after_gb']:.2f} GB |")
    RESULTS.write_text(json.dumps({"rows": rows, "jpeg_bytes_per_image": per_image}, indent=1))


if __name__ == "__main__":
    main()
