"""Notebook 09's dual-head pipeline on real faces at CPU scale, from random initialisation (no pretrained weights
can be downloaded here).

Task A: ../shared/realdata/facecom_task_a, 1,336 real FACECOM Task A training images (979 male / 357 female; most
250x250, 25 phone photos): ``--test`` of them held out (stratified) and scored, the recipe's dev share of the rest
steers training. Task B: the Pins celebrities (``pins_dev``, 50 x 30 loose crops): ``--per-identity`` images of each,
``--val-identities`` people held out as unseen val; every image written with FACECOM's seven distortions by
``helpers.distortions.distort_folder`` into a cache folder in Task B's layout (``Task_B/{train,val}``), read back with
the FACECOM reader; the recipe's dev share of the training people steers training.

The 09 recipe at demo sizing (convnext_atto, the demo's stage settings; dev: 15% of Task A train and of the training
people) with the sizes given here trains through the three stages (``helpers.facecom.fit``); reported on the held-out splits, next to the same network untrained:
Task A accuracy / precision / recall / F1, Task B top-1 and macro-F1 (distorted images against the clean gallery of
unseen people), the robustness table per distortion, pair verification at a threshold chosen on the dev people,
and with ``--single-task`` the stage-by-stage table against single-task models; each as mean +- std over
``--train-seeds`` (the splits stay those of ``--seed``): from scratch on ~1,000 images one run says little.

    python bench/realdata_facecom.py --single-task    # ~25 min on 2 shared cores (load average 3-4)
    python bench/realdata_facecom.py --image-size 96 --stages 8 10 4
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import checkpoint, config, facecom, recipes
from helpers.datasets import FaceSet, class_folders, holdout_split
from helpers.datasets.constants import FACECOM_GENDERS
from helpers.datasets.facecom import read_task_b
from helpers.distortions import distort_folder

RESULTS = Path(__file__).resolve().parent / "results" / "realdata_facecom.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--stages", type=int, nargs=3, default=(6, 6, 3), metavar=("GENDER", "VERIF", "JOINT"),
                        help="epochs of the gender, verification and joint stages")
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--augment", default="light")
    parser.add_argument("--distortion-p", type=float, default=0.25)
    parser.add_argument("--test", type=float, default=0.2, help="share of Task A held out and scored")
    parser.add_argument("--per-identity", type=int, default=10, help="Pins images per identity")
    parser.add_argument("--val-identities", type=int, default=15, help="Pins people held out (unseen) and scored")
    parser.add_argument("--single-task", action="store_true", help="also train and compare single-task models")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers; 0: each fit draws its "
                        "augmentation from the seeded global RNG, so a run does not depend on the runs before it")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (two lose badly on shared cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits and of the Pins sample")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=(0, 1, 2), help="one training run each")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def task_a(args: argparse.Namespace, recipe: recipes.Recipe) -> dict[str, pd.DataFrame]:
    """The real Task A images: ``--test`` held out as ``val``, then the recipe's dev share of the rest."""
    root = config.realdata("facecom_task_a")
    frame = class_folders(root / "Task_A" / "train", FACECOM_GENDERS).rename(columns={"identity": "gender"})
    rest, test = holdout_split(frame, args.test, by="label", seed=args.seed)
    return facecom.task_a_splits(FaceSet("facecom", root, {"train": rest, "val": test}), recipe.dev_fraction,
                                 args.seed)


def distorted_pins(args: argparse.Namespace) -> Path:
    """Pins in FACECOM Task B's layout with generated distortions, built once under the cache folder."""
    folder = config.cache_dir() / "realdata_facecom" / f"pins_{args.per_identity}x_{args.val_identities}val_seed{args.seed}"
    if all((folder / "Task_B" / split / ".complete").is_file() for split in ("train", "val")):
        return folder
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted build of this cache
    faces = class_folders(config.realdata("pins_dev"))
    faces = faces.groupby("identity").sample(n=args.per_identity, random_state=args.seed).sort_values("path")
    train, val = facecom.split_identities(faces, args.val_identities / faces.identity.nunique(), args.seed)
    for split, part in (("train", train), ("val", val)):
        distort_folder(part, folder / "Task_B" / split, seed=args.seed)
    return folder


def build_recipe(args: argparse.Namespace) -> recipes.Recipe:
    """The demo-sized 09 recipe with this run's sizes and stage epochs."""
    base = recipes.get("09_dualhead_facecom").for_profile(config.PROFILES["demo"])
    stages = {f"stage_{name}": {**base.spec[f"stage_{name}"], "epochs": n}
              for name, n in zip(recipes.STAGE_NAMES, args.stages, strict=True)}
    return base.with_values(image_size=args.image_size, batch_size=args.batch_size, lr=args.lr, augment=args.augment,
                            distortion_p=args.distortion_p, num_workers=args.workers, epochs=sum(args.stages),
                            dev_fraction=0.15, dev_identities=0.15, progress=False,
                            tensorboard=False, **stages)


def scores(model, parts_a, parts_b, recipe) -> dict:
    """Every Task A / Task B figure of one model on the held-out splits."""
    final = facecom.evaluate(model, parts_a, parts_b, recipe)
    dev_pairs = facecom.match_pairs(facecom.embed(model, parts_b["dev"], recipe), parts_b["dev"], seed=recipe.train.seed)
    val_pairs = facecom.match_pairs(final.store, parts_b["val"], seed=recipe.train.seed)
    seen = facecom.task_b_scores(model, parts_b["train"], recipe)
    return {"scores": {**final.scores, **{f"pairs_{k}": v for k, v in
                                          facecom.pair_report(dev_pairs, val_pairs).items()},
                       "task_b_seen_top1": seen["top1"]},
            "task_a_report": facecom.task_a_report(parts_a["train"]["label"], final.gender, recipe.class_weights),
            "robustness": facecom.robustness_table(final.store, parts_b["val"])}


def run(recipe: recipes.Recipe, parts_a, parts_b, single_task: bool) -> dict:
    """One training seed: the dual-head model (and the single-task ones), each scored next to the untrained net."""
    n_people = parts_b["train"]["label"].nunique()
    model, untrained = facecom.build_model(recipe, n_people), facecom.build_model(recipe, n_people)
    stages = recipes.dualhead_stages(recipe)
    train, val = facecom.make_loaders(parts_a, parts_b, recipe, model.info.norm)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        history = facecom.fit(model, recipe, train, val, stages, Path(tmp) / "dual_head", parts_a["train"]["label"])
        seconds = time.time() - start
        result = {"train_seconds": seconds, "train_images_per_s": float(history["train_images_per_s"].median()),
                  "history": history.drop(columns=["monitor"]), "trained": scores(model, parts_a, parts_b, recipe),
                  "untrained": scores(untrained, parts_a, parts_b, recipe)}
        if single_task:
            single = {}
            for name, task_stages in recipes.single_task_stages(recipe).items():
                single[name] = facecom.build_model(recipe, n_people)
                facecom.fit(single[name], recipe, train, val, task_stages, Path(tmp) / name, parts_a["train"]["label"])
            result["stage_comparison"] = facecom.stage_comparison(
                model, Path(tmp) / "dual_head", stages, {**single, "untrained": untrained}, parts_a, parts_b, recipe)
    return result


def mean_std(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Cell-wise ``mean +- std`` over the seeds' tables (the std only with two seeds or more)."""
    stacked = np.stack([f.to_numpy(dtype=float) for f in frames])
    cells = [[f"{m:.3f}" + (f" +- {sd:.3f}" if len(frames) > 1 else "") for m, sd in zip(mr, sr, strict=True)]
             for mr, sr in zip(stacked.mean(0), stacked.std(0), strict=True)]
    return pd.DataFrame(cells, index=frames[0].index, columns=frames[0].columns)


def summary(runs: dict[int, dict]) -> dict[str, pd.DataFrame]:
    """Mean +- std over the training seeds: scores (trained, untrained), robustness and the stage table."""
    def over(get) -> pd.DataFrame:
        return mean_std([get(r) for r in runs.values()])
    tables = {"scores": over(lambda r: pd.DataFrame({k: r[k]["scores"] for k in ("trained", "untrained")})),
              "task_a_report": over(lambda r: r["trained"]["task_a_report"].drop(columns="support")),
              "robustness_trained": over(lambda r: r["trained"]["robustness"]),
              "robustness_untrained": over(lambda r: r["untrained"]["robustness"])}
    if all("stage_comparison" in r for r in runs.values()):
        tables["stage_comparison"] = over(lambda r: r["stage_comparison"])
        tables["joint_effect"] = over(lambda r: facecom.joint_effect(r["stage_comparison"]))
    return tables


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = build_recipe(args)
    parts_a = task_a(args, recipe)
    parts_b = facecom.task_b_splits(read_task_b(distorted_pins(args)), recipe.dev_identities, args.seed)
    print(facecom.split_table(parts_a, parts_b).to_string())
    runs = {seed: run(recipe.with_values(seed=seed), parts_a, parts_b, args.single_task) for seed in args.train_seeds}
    tables = summary(runs)
    result = {
        "settings": {**vars(args), "out": str(args.out), "recipe": recipe.record(),
                     "splits": facecom.split_table(parts_a, parts_b).to_dict("index"),
                     "torch_threads": torch.get_num_threads(), "device": str(config.device()),
                     "load_average": os.getloadavg()},
        "chance": facecom.chance(parts_a["val"]["label"], parts_b["val"]["identity"].nunique()),
        "summary": {name: table.to_dict("index") for name, table in tables.items()},
        "runs": {seed: _json_tables(r) for seed, r in runs.items()},
    }
    checkpoint.write_json(args.out, json.loads(json.dumps(result, default=_plain)))
    for name, table in tables.items():
        print(f"\n{name} (mean +- std over training seeds {args.train_seeds})\n{table.to_string()}")
    print(f"\ntrain seconds per seed: {[round(r['train_seconds']) for r in runs.values()]}; written {args.out}")
    return result


def _json_tables(value):
    """Tables as dicts of rows (rounded), recursively."""
    if isinstance(value, pd.DataFrame):
        return value.round(4).to_dict("index" if not isinstance(value.index, pd.RangeIndex) else "list")
    if isinstance(value, dict):
        return {k: _json_tables(v) for k, v in value.items()}
    return value


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)


if __name__ == "__main__":
    main()
