"""The AdamW learning-rate table of notebook 03's ConvNeXt recipe on real faces (Pins and AT&T).

Notebook 03's own pipeline (``bench/realdata.py``'s ``pipeline_classifier``: the "paper" recipe through
``classification.build_model/loaders/fit``) with convnext_atto at 64 px, batch 32 and 64, one training seed,
a fixed epoch budget (Pins 12, AT&T 40 on CPU) and each rate of ``--lrs``: 3.1e-5 is the paper's linear
scaling (4e-3 x 32 / 4096) at batch 32, 1.25e-4 the old full-recipe rate (the same scaling at batch 128).
The warm-up is the recipe's share, 1/10 of the epochs (5 of 50), so that the rate found here carries over to
the full recipe's 50 epochs; everything else is the recipe's (EMA 0.9999 with timm's warm-up, drop path 0.1,
label smoothing 0.1, weight decay 0.05, cosine to 1e-6, light augmentation). Test accuracy is the best
validation epoch's checkpoint (EMA weights); "final train" is the last epoch's running accuracy on the
augmented, label-smoothed training batches (raw weights).

Runs are cached with ``realdata.py``'s (``bench/results/realdata_runs.json``): an interrupted sweep resumes.

    python bench/realdata_lr.py                          # 28 runs: ~2 h on 2 shared cores (Pins ~4 min a run)
    python bench/realdata_lr.py --datasets pins --batch-sizes 32 --seeds 1   # a second seed; the full table
                                                                        # then counts it (~25 min)
    python bench/realdata_lr.py --smoke                  # code path only
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realdata as rd

LRS = [3.125e-5, 1.25e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3]
NOTEBOOK, VARIANT = "03_convnext_from_scratch", "paper"


def sweep(datasets: list[str], batch_sizes: list[int], lrs: list[float], seeds: list[int],
          max_seed: int = 5) -> list[dict]:
    """Train the grid for ``seeds``; each row also counts any other seed below ``max_seed`` already in the
    cache (e.g. a second seed run later for one batch size)."""
    rows = []
    for dataset in datasets:
        epochs = rd.EPOCHS_03[dataset]
        for batch in batch_sizes:
            for lr in lrs:
                def run(seed: int, dataset=dataset, batch=batch, lr=lr, epochs=epochs) -> dict | None:
                    return rd.pipeline_classifier(NOTEBOOK, VARIANT, dataset, seed, lr=lr, batch_size=batch,
                                                  warmup_epochs=epochs / 10)
                results = {seed: run(seed) for seed in seeds}
                rd.BENCH.lookup = True
                results.update({seed: r for seed in range(max_seed) if seed not in results
                                and (r := run(seed)) is not None})
                rd.BENCH.lookup = False
                runs = [results[seed] for seed in sorted(results)]
                first = runs[0]
                rows.append({"data": dataset, "batch": batch, "lr": lr, "epochs": first["settings"]["epochs"],
                             "seeds": sorted(results), "test acc": float(np.mean([r["test_acc"] for r in runs])),
                             "test acc per seed": [r["test_acc"] for r in runs],
                             "final train acc": float(np.mean([r["final_train_acc"] for r in runs])),
                             "best val acc": float(np.mean([r["best_val_acc"] for r in runs])),
                             "best epoch": "/".join(str(r["best_epoch"]) for r in runs),
                             "wall s": "/".join(f"{r['wall_s']:.0f}" for r in runs), "chance": first["chance"],
                             "settings": rd.describe(first), "val_curves": [r["val_curve"] for r in runs]})
    return rows


def wide(rows: list[dict], lrs: list[float]) -> str:
    """One row per dataset x batch, one column per rate: ``test / final train`` (means over the seeds)."""
    out = []
    for key in dict.fromkeys((r["data"], r["batch"]) for r in rows):
        group = [r for r in rows if (r["data"], r["batch"]) == key]
        line = {"data": key[0], "batch": key[1], "epochs": group[0]["epochs"],
                "seeds": "/".join(str(len(r["seeds"])) for r in group)}
        line.update({f"{r['lr']:g}": f"{r['test acc']:.3f} / {r['final train acc']:.3f}" for r in group})
        out.append(line)
    return rd.markdown(out, ["data", "batch", "epochs", "seeds", *[f"{lr:g}" for lr in lrs]])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["pins", "att"], choices=["pins", "att"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--lrs", type=float, nargs="+", default=LRS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds to run (cached "
                        "runs of other seeds are counted too)")
    rd.common_args(parser)
    args = parser.parse_args(argv)
    rd.setup(args)
    try:
        rd.config.realdata()
    except FileNotFoundError as err:
        print(f"skipped: {err}")
        return
    rows = sweep(args.datasets, args.batch_sizes, args.lrs, args.seeds)
    print("\nNotebook 03 pipeline (convnext_atto, 64 px): test accuracy / final train accuracy per AdamW rate")
    print(wide(rows, args.lrs))
    print()
    print(rd.markdown(rows, ["data", "batch", "lr", "seeds", "test acc", "test acc per seed", "final train acc",
                             "best val acc", "best epoch", "chance", "wall s"]))
    rd.save("lr", {"rows": rows, "recipe": "03 paper at CPU scale, warm-up = epochs / 10",
                   "checkpoint": "best validation epoch (EMA weights)"})


if __name__ == "__main__":
    main()
