"""Each training notebook's pipeline against a plain PyTorch loop, on real faces (../shared/realdata).

For every training notebook, the same network and budget trained twice on the same split:

(a) ``pipeline``: the notebook's own path: ``helpers.recipes.get(notebook, variant)`` with only the CPU-scale
    values overridden (model size, image size, epochs, batch; listed per row under ``overrides``), then the
    notebook's helpers (``classification.build_model/loaders/fit``, ``verification.build_models/train``,
    ``attributes.build_model/make_loaders/build_loss`` + ``engine.fit_best``);
(b) ``plain``: the loop a competent user writes in ~30 lines (``plain_fit`` below): AdamW + one-cycle, label
    smoothing 0.1 for classifiers, flips + small shifts (torchvision v2), no EMA, no warm-up of its own.

Both end on their best validation epoch (the pipeline by ``recipe.train.monitor``, the plain loop by val
accuracy, or val loss for notebook 08) and are scored on the same held-out test images with the same eval
transform (resize the shorter side, centre crop). Nothing is downloaded: every network starts from random
weights (``pretrained=False``), so the 04-06 "seed" recipes, written for ImageNet/VGGFace2 weights, are run
outside what they were meant for: their rows say how they behave from scratch, not what the report measured.

Data (split seed 0 for every run; the training seed varies): Pins 50 identities x 30 images, 20/5/5 per
identity (train/val/test); AT&T 40 x 10, 6/2/2; notebook 07: 35 Pins identities (25 train / 5 dev images
each), verification on the other 15 (10 known with a 10-image gallery each, their other 20 images plus all
images of 5 unknown identities as open-set queries, every same-identity pair and as many random
different-identity pairs); notebook 08: UTKFace 70/15/15 stratified by race x gender.

Every run is cached in ``bench/results/realdata_runs.json`` (keyed by its full settings), so an interrupted
sweep resumes and ``realdata_lr.py`` reuses identical runs; ``--force`` reruns. Torch uses ONE thread by
default: on the shared 2-core machine two threads ran convnext_atto at ~7 img/s against ~60-100 with one
(OpenMP threads waiting on a descheduled sibling), so ``--threads 2`` only pays off on an idle machine.

    python bench/realdata.py convnext                 # 03 on Pins and AT&T, 2 seeds: ~45 min on 2 shared cores
    python bench/realdata.py transfer                 # 04 seed/improved, 05, 06 on Pins: ~35 min
    python bench/realdata.py arcface                  # 07 on Pins 35/15: ~10 min
    python bench/realdata.py multitask                # 08 on UTKFace: ~12 min
    python bench/realdata.py ablate                   # 03 Pins, one recipe change at a time: ~35 min
    python bench/realdata.py ablate --notebook 08     # 08 on UTKFace, one change at a time: ~25 min
    python bench/realdata.py ablate --notebook 07     # 07: ArcFace scale s=16 and 30 against 64: ~8 min
    python bench/realdata.py convnext --epochs-03 30 40 --datasets pins --seeds 0   # a longer Pins budget
    python bench/realdata.py all --smoke              # every code path, 2 steps an epoch: ~5 min

Timings above were measured on a 2-core VM shared with other jobs (load average 4-7): expect less on an idle
machine. A command run again prints its tables from the cache at once. ``--device cuda`` runs the same on a
GPU (bf16 autocast for both arms).
"""
from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # no per-file progress bars in the bench logs

import argparse
import ast
import copy
import hashlib
import json
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from helpers import attributes, classification, config, data, engine, recipes, transforms, verification
from helpers.datasets import class_folders, stratified_split
from helpers.datasets.constants import HW2P2_NO_MATCH

RESULTS = ROOT / "bench" / "results"
CACHE = RESULTS / "realdata_runs.json"
VERSION = 1  # part of every cache key: bump when a run's code changes
PLAIN_LR = 2e-3  # the plain loop's AdamW peak rate (one-cycle), every classifier and ArcFace
SMOKE_STEPS = 2

# Identity splits per dataset: realdata folder and per-identity fractions.
SPLITS = {"pins": ("pins_dev", {"train": 20 / 30, "val": 5 / 30, "test": 5 / 30}, (20, 5, 5)),
          "att": ("att_faces", {"train": 0.6, "val": 0.2, "test": 0.2}, (6, 2, 2))}
# CPU scale of each notebook: everything else is the recipe's. (notebook, variant) -> overrides; epochs by data.
QUIET = {"progress": False, "tensorboard": False, "num_workers": 0}  # logging and loader workers only
EPOCHS_03 = {"pins": 12, "att": 40}
SCALE = {
    ("03_convnext_from_scratch", "paper"): {"model": "scratch/convnext_atto", "image_size": 64, "batch_size": 32},
    ("04_resnet50", "seed"): {"model": "resnet18", "pretrained": False, "image_size": 64, "batch_size": 32,
                              "epochs": 8},
    ("04_resnet50", "improved"): {"model": "resnet18", "pretrained": False, "image_size": 64, "batch_size": 32,
                                  "epochs": 8},
    ("05_mobilenetv2", "seed"): {"pretrained": False, "image_size": 64, "batch_size": 32, "epochs": 10},
    ("06_inception_resnet_v1", "seed"): {"pretrained": False, "image_size": 80, "batch_size": 32, "epochs": 4,
                                         "frozen_epochs": 1},
    ("07_arcface_verification", "arcface"): {"backbone": "scratch/convnext_atto", "init_from": None,
                                             "image_size": 64, "batch_size": 32, "epochs": 12},
    ("08_multitask_fairface", "baseline"): {"image_size": 64, "batch_size": 32, "epochs": 5},
}
WHY = {  # why each override, for the report
    "model": "CPU: convnext_atto (3.4M) for ConvNeXt-T; resnet18 for resnet50 (11 img/s at 64 px on 1 thread)",
    "image_size": "CPU: 64 px (80 for InceptionResnetV1, whose input must be >= 75 px)",
    "epochs": "CPU: ~4 min per run", "frozen_epochs": "scaled with epochs (3 of 10 -> 1 of 4)",
    "init_from": "from scratch: no notebook-03 checkpoint of this size", "pretrained": "no downloads here",
    "batch_size": "CPU", "backbone": "as model",
}
SETTINGS = ("model", "backbone", "image_size", "epochs", "batch_size", "optimizer", "lr", "scheduler",
            "warmup_epochs", "weight_decay", "label_smoothing", "augment", "ema_decay", "drop_path_rate",
            "dropout", "freeze", "frozen_epochs", "lr_unfrozen", "backbone_lr_scale", "s", "m", "monitor")


@dataclass
class Bench:
    """Run-wide options (set once by ``setup``)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    threads: int = 1
    smoke: bool = False
    force: bool = False
    lookup: bool = False  # only read the cache: a run not there is None, not trained
    cache: Path = CACHE


BENCH = Bench()


def setup(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    BENCH.device = torch.device(args.device) if args.device else config.device()
    BENCH.threads, BENCH.smoke, BENCH.force = args.threads, args.smoke, args.force
    BENCH.cache = Path(tempfile.gettempdir()) / "realdata_smoke_runs.json" if args.smoke else args.cache


def common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: see the module docstring)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: helpers.config.device())")
    parser.add_argument("--smoke", action="store_true", help="2 steps an epoch, a throw-away cache: code paths")
    parser.add_argument("--force", action="store_true", help="rerun runs found in the cache")
    parser.add_argument("--cache", type=Path, default=CACHE)


def machine() -> dict:
    return {"device": str(BENCH.device), "threads": BENCH.threads, "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "note": "2-core VM shared with other agents' jobs: wall times are inflated and noisy"}


# ------------------------------------------------------------------------------------------------------ data

def identity_splits(dataset: str, seed: int = 0) -> tuple[dict[str, pd.DataFrame], int]:
    """``train``/``val``/``test`` per identity (``SPLITS``), stratified and seeded; the counts are checked."""
    folder, fractions, counts = SPLITS[dataset]
    frame = class_folders(config.realdata(folder))
    parts = stratified_split(frame, fractions, by="label", seed=seed)
    for (name, part), count in zip(parts.items(), counts, strict=True):
        per_identity = part["label"].value_counts()
        if per_identity.min() != count or per_identity.max() != count:
            raise AssertionError(f"{dataset} {name}: {per_identity.min()}-{per_identity.max()} images per identity")
    return parts, frame["label"].nunique()


def arcface_data(seed: int = 0) -> dict:
    """Notebook 07's data from Pins: 35 training identities (relabelled 0..34; 25 train / 5 dev images each)
    and, from the 15 held out, the open-set gallery/queries and the labelled pairs."""
    frame = class_folders(config.realdata("pins_dev"))
    rng = np.random.default_rng(seed)
    names = rng.permutation(sorted(frame["identity"].unique()))
    train_ids, known_ids = sorted(names[:35]), names[35:45]
    trained = frame[frame["identity"].isin(train_ids)].copy()
    trained["label"] = trained["identity"].map({name: i for i, name in enumerate(train_ids)})
    parts = stratified_split(trained, {"train": 25 / 30, "dev": 5 / 30}, by="label", seed=seed)
    held = frame[~frame["identity"].isin(train_ids)]
    known_frame = held[held["identity"].isin(known_ids)]
    gallery = stratified_split(known_frame, {"known": 1 / 3, "query": 2 / 3}, by="identity", seed=seed)
    unknown = held[~held["identity"].isin(known_ids)].assign(identity=HW2P2_NO_MATCH)
    queries = pd.concat([gallery["query"], unknown])[["path", "identity"]].reset_index(drop=True)
    paths, who = held["path"].to_numpy(), held["identity"].to_numpy()
    i, j = np.triu_indices(len(held), k=1)
    same = who[i] == who[j]
    negatives = rng.choice(np.flatnonzero(~same), size=int(same.sum()), replace=False)
    keep = np.concatenate([np.flatnonzero(same), negatives])
    pairs = pd.DataFrame({"path1": paths[i[keep]], "path2": paths[j[keep]], "match": same[keep].astype(int)})
    return {"train": parts["train"], "dev": parts["dev"], "known": gallery["known"][["path", "identity"]],
            "queries": queries, "pairs": pairs, "num_classes": 35}


def utkface_data(seed: int = 0) -> tuple[dict[str, pd.DataFrame], attributes.LabelSpace]:
    """UTKFace's labels.csv as notebook 08's frame, split 70/15/15 by race x gender (``make_splits``)."""
    folder = config.realdata("utkface_dev")
    labels = pd.read_csv(folder / "labels.csv")
    frame = pd.DataFrame({"path": [str(folder / "images" / name) for name in labels["file"]],
                          "age": labels["age"], "gender_idx": labels["gender"], "race_idx": labels["race"]})
    splits = attributes.make_splits({"all": attributes.from_utkface(frame)}, "stratified", seed=seed)
    return splits, attributes.label_space("utkface")


# -------------------------------------------------------------------------------------------- the plain loop

class PlainImages(Dataset):
    """Image files with their targets (one column, or a dict of columns): a user's own Dataset."""

    def __init__(self, frame: pd.DataFrame, target: str | list[str], transform: Callable):
        self.paths, self.transform = frame["path"].tolist(), transform
        columns = [target] if isinstance(target, str) else target
        self.targets = {c: torch.as_tensor(frame[c].to_numpy()) for c in columns}
        self.single = target if isinstance(target, str) else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as image:
            x = self.transform(image.convert("RGB"))
        return x, (self.targets[self.single][i] if self.single else {c: t[i] for c, t in self.targets.items()})


def plain_transform(size: int, norm: str = "imagenet") -> v2.Compose:
    """Light augmentation: the eval resize/crop, a shift of up to 1/16 of the side (reflect padding), a flip."""
    mean, std = transforms.NORMS[norm]
    return v2.Compose([v2.Resize(size), v2.CenterCrop(size), v2.RandomCrop(size, padding=size // 16,
                                                                            padding_mode="reflect"),
                       v2.RandomHorizontalFlip(), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(mean, std)])


def plain_loader(frame: pd.DataFrame, target, size: int, batch_size: int, norm: str, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(PlainImages(frame, target, plain_transform(size, norm)), batch_size=batch_size, shuffle=True,
                      drop_last=True, num_workers=0, generator=generator)


def to_device(obj):
    return {k: v.to(BENCH.device) for k, v in obj.items()} if isinstance(obj, dict) else obj.to(BENCH.device)


def autocast():
    return torch.autocast(BENCH.device.type, dtype=torch.bfloat16, enabled=BENCH.device.type == "cuda")


def plain_fit(model: nn.Module, train: DataLoader, val: DataLoader, epochs: int, lr: float, loss_fn: Callable,
              score: Callable, maximize: bool = True, optimizer: str = "adamw", schedule: str = "onecycle",
              weight_decay: float = 0.05) -> pd.DataFrame:
    """The plain loop: AdamW (or Adam) over every parameter, one-cycle (or constant) rate, the best epoch's
    weights by ``score(model, val)`` restored at the end. Returns one row per epoch."""
    model.to(BENCH.device)
    steps = min(len(train), SMOKE_STEPS) if BENCH.smoke else len(train)
    opt = (torch.optim.AdamW(model.parameters(), lr, weight_decay=weight_decay) if optimizer == "adamw"
           else torch.optim.Adam(model.parameters(), lr))
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
             if schedule == "onecycle" else None)
    best, best_state, rows = None, None, []
    for epoch in range(1, epochs + 1):
        model.train()
        hits = seen = 0
        for _, (x, y) in zip(range(steps), train, strict=False):
            x, y = x.to(BENCH.device), to_device(y)
            with autocast():
                out = model(x)
            loss = loss_fn(out.float() if isinstance(out, torch.Tensor) else out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if isinstance(out, torch.Tensor):
                hits, seen = hits + (out.argmax(1) == y).sum().item(), seen + len(y)
        value = score(model, val)
        rows.append({"epoch": epoch, "train_acc": hits / seen if seen else math.nan, "val": value})
        if best is None or (value > best if maximize else value < best):
            best, best_state = value, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return pd.DataFrame(rows)


@torch.no_grad()
def plain_accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    hits = seen = 0
    for x, y in loader:
        with autocast():
            hits += (model(x.to(BENCH.device)).argmax(1).cpu() == y).sum().item()
        seen += len(y)
    return hits / seen


def multitask_loss(out: dict, y: dict) -> torch.Tensor:
    """The issue's plain multi-task loss: cross-entropy for gender and race, L1 on years / 100 for age."""
    return (F.cross_entropy(out["gender"].float(), y["gender"]) + F.cross_entropy(out["race"].float(), y["race"])
            + F.l1_loss(out["age"].float() / 100, y["age_years"].float() / 100))


@torch.no_grad()
def plain_loss(model: nn.Module, loader: DataLoader, loss_fn: Callable) -> float:
    model.eval()
    total = seen = 0
    for x, y in loader:
        with autocast():
            out = model(x.to(BENCH.device))
        n = len(x)
        total, seen = total + loss_fn(out, to_device(y)).item() * n, seen + n
    return total / seen


# ------------------------------------------------------------------------------------------------- running

def load_cache() -> dict:
    return json.loads(BENCH.cache.read_text()) if BENCH.cache.is_file() else {}


def run_cached(spec: dict, fn: Callable[[], dict]) -> dict:
    """``fn()`` timed (wall and process CPU seconds), stored under the hash of ``spec``; a stored run is
    returned as it is unless ``--force``."""
    spec = json.loads(json.dumps({**spec, "version": VERSION, "smoke": BENCH.smoke,
                                  "device": BENCH.device.type}, sort_keys=True, default=str))
    key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    cached = load_cache().get(key)
    label = f"{spec.get('notebook')} {spec.get('variant')} {spec.get('arm')} {spec.get('dataset')} seed {spec.get('seed')}"
    if BENCH.lookup:
        return None if cached is None else cached["result"]
    if cached is not None and not BENCH.force:
        print(f"[cached] {label}: {cached['result'].get('summary', '')}", flush=True)
        return cached["result"]
    print(f"[run] {label}", flush=True)
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    result.update(wall_s=round(time.perf_counter() - wall, 1), cpu_s=round(time.process_time() - cpu, 1),
                  machine=machine(), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    print(f"      -> {result.get('summary', '')} ({result['wall_s']:.0f} s)", flush=True)
    cache = load_cache()
    cache[key] = {"spec": spec, "result": result}
    BENCH.cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = BENCH.cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True, default=str) + "\n")
    tmp.replace(BENCH.cache)
    return result


def recipe_for(notebook: str, variant: str, dataset: str, seed: int = 0, **changes) -> recipes.Recipe:
    """The recipe as the bench runs it: the notebook's recipe, its CPU-scale overrides (``SCALE``), quiet
    logging, the training seed and device, then ``changes`` (an ablation or a swept value)."""
    scale = dict(SCALE[(notebook, variant)])
    if notebook == "03_convnext_from_scratch":
        scale["epochs"] = EPOCHS_03[dataset]
    smoke = {"max_steps_per_epoch": SMOKE_STEPS, "epochs": 2} if BENCH.smoke else {}
    if smoke and "frozen_epochs" in scale:
        smoke["frozen_epochs"] = 1
    values = {**scale, **QUIET, **smoke, "seed": seed, "device": BENCH.device.type, **changes}
    return recipes.get(notebook, variant).with_values(**values)


def settings(recipe: recipes.Recipe) -> dict:
    values = {**recipe.spec, **{k: getattr(recipe.train, k) for k in SETTINGS if hasattr(recipe.train, k)}}
    return {k: values[k] for k in SETTINGS if k in values}


def overrides(notebook: str, variant: str, changes: Mapping) -> dict:
    """What differs from the recipe: the CPU-scale values and the changes."""
    base = recipes.get(notebook, variant)
    scale = {**SCALE[(notebook, variant)], **({"epochs": "by dataset"} if notebook.startswith("03") else {})}
    return {**{k: f"{getattr(base.train, k, None) if k in recipes.TRAIN_FIELDS else base.spec.get(k)} -> {v}"
               for k, v in scale.items()}, **{k: f"-> {v} (change)" for k, v in changes.items()}}


def spec_of(arm: str, notebook: str, variant: str, dataset: str, seed: int, recipe: recipes.Recipe | None,
            **extra) -> dict:
    """A run's cache key: the resolved recipe (not the changes that led to it), so the same run asked for by
    the LR sweep and by an ablation is trained once."""
    return {"arm": arm, "notebook": notebook, "variant": variant, "dataset": dataset, "seed": seed,
            "recipe": recipe.record() if recipe is not None else None, **extra}


def history_summary(history: pd.DataFrame, monitor: str) -> dict:
    mode_min = monitor.endswith(("loss", "mae"))
    best = history[monitor].idxmin() if mode_min else history[monitor].idxmax()
    return {"best_epoch": int(history.loc[best, "epoch"]), "epochs_run": len(history),
            "final_train_acc": float(history["train_acc"].iloc[-1]),
            "val_curve": [round(float(v), 4) for v in history[monitor]]}


# ------------------------------------------------------------------------------------ 03-06 classification

def pipeline_classifier(notebook: str, variant: str, dataset: str, seed: int = 0, **changes) -> dict:
    recipe = recipe_for(notebook, variant, dataset, seed, **changes)

    def run() -> dict:
        parts, n = identity_splits(dataset)
        config.seed_everything(seed)
        model = classification.build_model(recipe, n)
        batches = classification.loaders(parts, recipe, model, n)
        with tempfile.TemporaryDirectory() as tmp:
            history = classification.fit(model, recipe, batches, Path(tmp) / "run")
        test = engine.evaluate(model, batches["test"], amp=recipe.train.amp,
                               channels_last=recipe.train.channels_last)
        out = {"test_acc": test["acc"], "chance": 1 / n, "best_val_acc": float(history["val_acc"].max()),
               **history_summary(history, recipe.train.monitor), "settings": settings(recipe),
               "overrides": overrides(notebook, variant, changes),
               "checkpoint": f"best by {recipe.train.monitor} (EMA weights when EMA is on)"}
        return {**out, "summary": f"test {out['test_acc']:.3f}, train {out['final_train_acc']:.3f}"}
    return run_cached(spec_of("pipeline", notebook, variant, dataset, seed, recipe), run)


def plain_classifier(notebook: str, variant: str, dataset: str, seed: int = 0, lr: float = PLAIN_LR) -> dict:
    """The plain loop on the pipeline's network (``classification.build_model`` of the same recipe) with the
    same image size, epochs and batch."""
    recipe = recipe_for(notebook, variant, dataset, seed)
    epochs, size, batch = recipe.train.epochs, recipe.image_size, recipe.batch_size

    def run() -> dict:
        parts, n = identity_splits(dataset)
        config.seed_everything(seed)
        model = classification.build_model(recipe, n)
        norm = model.info.norm
        train = plain_loader(parts["train"], "label", size, batch, norm, seed)
        val, test = (data.loader(parts[s], size, batch, train=False, norm=norm, num_workers=0)
                     for s in ("val", "test"))
        history = plain_fit(model, train, val, epochs, lr, nn.CrossEntropyLoss(label_smoothing=0.1), plain_accuracy)
        out = {"test_acc": plain_accuracy(model, test), "chance": 1 / n, "best_val_acc": float(history["val"].max()),
               **history_summary(history.rename(columns={"val": "val_acc"}), "val_acc"),
               "settings": {"model": recipe.spec.get("model"), "image_size": size, "epochs": epochs,
                            "batch_size": batch, **plain_settings(lr)},
               "checkpoint": "best by val_acc"}
        return {**out, "summary": f"test {out['test_acc']:.3f}, train {out['final_train_acc']:.3f}"}
    return run_cached(spec_of("plain", notebook, variant, dataset, seed, None, model=recipe.spec.get("model"),
                              head=recipe.spec.get("head"), dropout=recipe.spec.get("dropout"), epochs=epochs,
                              image_size=size, batch_size=batch, lr=lr), run)


def plain_settings(lr: float, optimizer: str = "adamw", smoothing: float | None = 0.1) -> dict:
    return {"optimizer": optimizer, "lr": lr, "scheduler": "one-cycle" if optimizer == "adamw" else "constant",
            "warmup_epochs": "30% (one-cycle)" if optimizer == "adamw" else 0,
            "weight_decay": 0.05 if optimizer == "adamw" else 0.0, "label_smoothing": smoothing,
            "augment": "flip + shift <= 1/16 (plain)", "ema_decay": None}


# ------------------------------------------------------------------------------------------- 07 ArcFace

def arcface_eval(embedder: nn.Module, recipe: recipes.Recipe, sets: dict) -> dict:
    """Embed the held-out identities (flip TTA as the recipe says) and score open-set identification and the
    pairs with ``verification.compare`` (cosine)."""
    paths = verification.image_paths(sets["known"], sets["queries"], sets["pairs"])
    vectors = verification.embed_paths(embedder, paths, recipe.image_size, flip_tta=recipe.flip_tta,
                                       normalize=False, num_workers=0, progress=False)
    store = verification.EmbeddingStore(paths, vectors)
    table = verification.compare({"model": store}, sets["known"], sets["queries"], sets["pairs"],
                                 metric_names=("cosine",), gallery=recipe.gallery)
    row = table.iloc[0]
    keys = ("open_set_acc", "open_set_acc_cv", "rank1_known", "no_match_share", "threshold", "pairs_auc",
            "pairs_eer", "pairs_kfold_accuracy")
    return {k: float(row[k]) for k in keys if k in row}


def pipeline_arcface(seed: int = 0, **changes) -> dict:
    notebook, variant = "07_arcface_verification", "arcface"
    recipe = recipe_for(notebook, variant, "pins35", seed, **changes)

    def run() -> dict:
        sets = arcface_data()
        loaders = data.make_loaders({"train": sets["train"], "dev": sets["dev"]}, recipe.augment, recipe.image_size,
                                    recipe.batch_size, num_workers=recipe.num_workers, seed=recipe.train.seed)
        _, model = verification.build_models(recipe, sets["num_classes"], None)
        with tempfile.TemporaryDirectory() as tmp:
            history = verification.train({"arcface": model}, loaders, recipe, Path(tmp))["arcface"]
        out = {**arcface_eval(model.embedder, recipe, sets), "dev_acc": float(history["val_acc"].max()),
               **history_summary(history, recipe.train.monitor), "settings": settings(recipe),
               "overrides": overrides(notebook, variant, changes), "checkpoint": "best by dev val_acc"}
        return {**out, "summary": f"AUC {out['pairs_auc']:.3f}, open-set cv {out['open_set_acc_cv']:.3f}"}
    return run_cached(spec_of("pipeline", notebook, variant, "pins35", seed, recipe), run)


def plain_arcface(seed: int = 0, lr: float = PLAIN_LR) -> dict:
    notebook, variant = "07_arcface_verification", "arcface"
    recipe = recipe_for(notebook, variant, "pins35", seed)
    epochs, size, batch = recipe.train.epochs, recipe.image_size, recipe.batch_size

    def run() -> dict:
        sets = arcface_data()
        _, model = verification.build_models(recipe, sets["num_classes"], None)  # same network, same seed
        train = plain_loader(sets["train"], "label", size, batch, "imagenet", seed)
        dev = data.loader(sets["dev"], size, batch, train=False, num_workers=0)
        history = plain_fit(model, train, dev, epochs, lr, model.loss, plain_accuracy)
        out = {**arcface_eval(model.embedder, recipe, sets), "dev_acc": float(history["val"].max()),
               **history_summary(history.rename(columns={"val": "val_acc"}), "val_acc"),
               "settings": {"backbone": recipe.backbone, "image_size": size, "epochs": epochs, "batch_size": batch,
                            **plain_settings(lr, smoothing=None), "s": recipe.s, "m": recipe.m},
               "checkpoint": "best by dev val_acc"}
        return {**out, "summary": f"AUC {out['pairs_auc']:.3f}, open-set cv {out['open_set_acc_cv']:.3f}"}
    return run_cached(spec_of("plain", notebook, variant, "pins35", seed, None, backbone=recipe.backbone,
                              s=recipe.s, m=recipe.m, epochs=epochs, image_size=size, batch_size=batch, lr=lr), run)


# ------------------------------------------------------------------------------------------ 08 multi-task

DECADES = ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]


def multitask_scores(pred: pd.DataFrame, splits: dict, labels) -> dict:
    """Task metrics, the references (chance, median-age guess) and the age MAE per decade."""
    scores = attributes.task_metrics(pred)
    median = float(splits["train"]["age_years"].median())
    decade = np.minimum(pred["age_years"].to_numpy() // 10, 7).astype(int)
    error = np.abs(pred["pred_age_years"].to_numpy() - pred["age_years"].to_numpy())
    guess = np.abs(median - pred["age_years"].to_numpy())
    per_decade = {DECADES[d]: {"n": int((decade == d).sum()), "mae": float(error[decade == d].mean()),
                               "median_guess_mae": float(guess[decade == d].mean())}
                  for d in range(len(DECADES)) if (decade == d).any()}
    return {**{k: float(v) for k, v in scores.items()}, "chance": attributes.chance(splits["test"], labels),
            "no_image": attributes.no_image(splits["train"], splits["test"]), "median_age": median,
            "age_by_decade": per_decade, "pred_age_spread": float(pred["pred_age_years"].std())}


def pipeline_multitask(seed: int = 0, **changes) -> dict:
    notebook, variant = "08_multitask_fairface", "baseline"
    recipe = recipe_for(notebook, variant, "utkface", seed, **changes)

    def run() -> dict:
        splits, labels = utkface_data()
        config.seed_everything(seed)
        model = attributes.build_model(recipe, labels, splits["train"])
        loaders = attributes.make_loaders(splits, recipe)
        with tempfile.TemporaryDirectory() as tmp:
            history = engine.fit_best(model, loaders["train"], loaders["val"], recipe.train, Path(tmp) / "run",
                                      meta=recipe.record(), loss_fn=attributes.build_loss(recipe, labels,
                                                                                          splits["train"]),
                                      metrics_fn=attributes.metrics_fn(recipe.age_mode))
        pred = attributes.predict_table(model, loaders["test"], recipe.age_mode)
        out = {**multitask_scores(pred, splits, labels), **history_summary(history, recipe.train.monitor),
               "settings": {**settings(recipe), "backbone": recipe.backbone,
                            "race_class_weights": recipe.race_class_weights},
               "overrides": overrides(notebook, variant, changes), "checkpoint": "best by val_loss"}
        return {**out, "summary": f"gender {out['gender_acc']:.3f}, race {out['race_acc']:.3f}, "
                                  f"age MAE {out['age_mae']:.2f}"}
    return run_cached(spec_of("pipeline", notebook, variant, "utkface", seed, recipe), run)


def plain_multitask(seed: int = 0, lr: float = 1e-3) -> dict:
    """The issue's loop: Adam 1e-3 (constant), CE + CE + L1(years/100), light augmentation, best val loss."""
    notebook, variant = "08_multitask_fairface", "baseline"
    recipe = recipe_for(notebook, variant, "utkface", seed)
    epochs, size, batch = recipe.train.epochs, recipe.image_size, recipe.batch_size

    def run() -> dict:
        splits, labels = utkface_data()
        config.seed_everything(seed)
        model = attributes.build_model(recipe, labels, splits["train"])  # same network and age-bias start
        train = plain_loader(splits["train"], ["gender", "race", "age_years"], size, batch, "imagenet", seed)
        evals = data.make_loaders({k: v for k, v in splits.items() if k != "train"}, "none", size, batch,
                                  target=attributes.TARGETS, train_split="-", num_workers=0)
        history = plain_fit(model, train, evals["val"], epochs, lr, multitask_loss,
                            lambda m, loader: plain_loss(m, loader, multitask_loss), maximize=False,
                            optimizer="adam", schedule="constant")
        pred = attributes.predict_table(model, evals["test"], recipe.age_mode)
        out = {**multitask_scores(pred, splits, labels),
               **history_summary(history.rename(columns={"val": "val_loss"}), "val_loss"),
               "settings": {"backbone": recipe.backbone, "image_size": size, "epochs": epochs, "batch_size": batch,
                            **plain_settings(lr, "adam", smoothing=0.0), "race_class_weights": False},
               "checkpoint": "best by val loss"}
        return {**out, "summary": f"gender {out['gender_acc']:.3f}, race {out['race_acc']:.3f}, "
                                  f"age MAE {out['age_mae']:.2f}"}
    return run_cached(spec_of("plain", notebook, variant, "utkface", seed, None, backbone=recipe.backbone,
                              epochs=epochs, image_size=size, batch_size=batch, lr=lr), run)


# ------------------------------------------------------------------------------------------------ tables

def fmt(value, digits: int = 3) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def describe(result: dict) -> str:
    s = result["settings"]
    bits = [str(s.get("model") or s.get("backbone")).replace("scratch/", ""), f"{s['image_size']}px",
            f"{s['epochs']}ep", f"b{s['batch_size']}", f"{s['optimizer']} {s['lr']:g}", str(s["scheduler"])]
    if s.get("warmup_epochs"):
        bits.append(f"warm-up {s['warmup_epochs']}")
    bits += [f"aug {s.get('augment')}", f"EMA {s.get('ema_decay')}", f"LS {s.get('label_smoothing')}"]
    if s.get("drop_path_rate") is not None:
        bits.append(f"drop-path {s['drop_path_rate']}")
    if s.get("freeze") not in (None, "full") or s.get("frozen_epochs"):
        bits.append(f"freeze {s.get('freeze')} after {s.get('frozen_epochs')} head-only")
    if s.get("backbone_lr_scale") not in (None, 1.0):
        bits.append(f"body lr x{s['backbone_lr_scale']}")
    return ", ".join(bits)


def save(name: str, payload: dict) -> Path:
    path = (Path(tempfile.gettempdir()) if BENCH.smoke else RESULTS) / f"realdata_{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=1, default=str) + "\n")
    print(f"\nwrote {path}")
    return path


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


# --------------------------------------------------------------------------------------------- commands

CLASSIFIERS = [("03_convnext_from_scratch", "paper", "pins"), ("03_convnext_from_scratch", "paper", "att")]
TRANSFER = [("04_resnet50", "seed", "pins"), ("04_resnet50", "improved", "pins"), ("05_mobilenetv2", "seed", "pins"),
            ("06_inception_resnet_v1", "seed", "pins")]


def classifier_rows(jobs: list, seeds: list[int]) -> list[dict]:
    rows, plain_done = [], set()
    for notebook, variant, dataset in jobs:
        arms = [("pipeline", lambda s, n=notebook, v=variant, d=dataset: pipeline_classifier(n, v, d, s))]
        plain_key = (notebook, recipe_for(notebook, variant, dataset).spec.get("model"), dataset)
        if plain_key not in plain_done:  # 04 seed and improved share one network: one plain run
            plain_done.add(plain_key)
            arms.append(("plain", lambda s, n=notebook, v=variant, d=dataset: plain_classifier(n, v, d, s)))
        for arm, fn in arms:
            results = [fn(seed) for seed in seeds]
            first = results[0]
            rows.append({"notebook": notebook[:2], "pipeline": f"{arm}" + (f" ({variant})" if arm == "pipeline"
                                                                           else ""),
                         "data": dataset, "settings": describe(first), "seeds": len(results),
                         "test acc": mean_std([r["test_acc"] for r in results]),
                         "final train acc": mean_std([r["final_train_acc"] for r in results]),
                         "best epoch": "/".join(str(r["best_epoch"]) for r in results),
                         "chance": f"{first['chance']:.3f}",
                         "wall s": "/".join(f"{r['wall_s']:.0f}" for r in results),
                         "overrides": first.get("overrides"), "runs": results})
    return rows


CLASSIFIER_COLUMNS = ["notebook", "pipeline", "data", "settings", "seeds", "test acc", "final train acc",
                      "best epoch", "chance", "wall s"]


def cmd_classifiers(name: str, jobs: list, seeds: list[int]) -> list[dict]:
    rows = classifier_rows(jobs, seeds)
    print(markdown(rows, CLASSIFIER_COLUMNS))
    save(name, {"rows": rows, "checkpoint": "both arms: best validation epoch"})
    return rows


def cmd_arcface(seeds: list[int]) -> list[dict]:
    rows = []
    for arm, fn in (("pipeline (arcface)", pipeline_arcface), ("plain", plain_arcface)):
        for seed in seeds:
            r = fn(seed)
            rows.append({"pipeline": arm, "seed": seed, "settings": describe(r), **{
                k: r[k] for k in ("pairs_auc", "pairs_eer", "open_set_acc_cv", "open_set_acc", "rank1_known",
                                  "no_match_share", "dev_acc", "final_train_acc", "best_epoch", "wall_s")},
                "overrides": r.get("overrides"), "run": r})
    print("\nNotebook 07, Pins: train 35 identities, verify on 15 unseen (10 known + 5 unknown); chance: AUC 0.5, "
          "open-set 'all unknown' = no_match_share")
    print(markdown(rows, ["pipeline", "seed", "settings", "pairs_auc", "pairs_eer", "open_set_acc_cv", "open_set_acc",
                          "rank1_known", "no_match_share", "dev_acc", "final_train_acc", "best_epoch", "wall_s"]))
    save("arcface", {"rows": rows})
    return rows


def cmd_multitask(seeds: list[int]) -> list[dict]:
    rows, decades = [], []
    for arm, fn in (("pipeline (baseline)", pipeline_multitask), ("plain", plain_multitask)):
        for seed in seeds:
            r = fn(seed)
            rows.append({"pipeline": arm, "seed": seed, "settings": describe(r), **{
                k: r[k] for k in ("gender_acc", "race_acc", "race_balanced_acc", "age_mae", "age_one_off",
                                  "pred_age_spread", "best_epoch", "wall_s")},
                "median-age MAE": r["no_image"]["age_mae"], "overrides": r.get("overrides"), "run": r})
            for decade, v in r["age_by_decade"].items():
                decades.append({"pipeline": arm, "seed": seed, "decade": decade, **v})
    ref = rows[0]["run"]
    print(f"\nNotebook 08, UTKFace test split: chance gender {ref['chance']['gender_acc']:.2f}, race "
          f"{ref['chance']['race_acc']:.2f}; majority race {ref['no_image']['race_acc']:.3f}; "
          f"median age {ref['median_age']:.0f} -> MAE {ref['no_image']['age_mae']:.2f}")
    print(markdown(rows, ["pipeline", "seed", "settings", "gender_acc", "race_acc", "race_balanced_acc", "age_mae",
                          "median-age MAE", "age_one_off", "pred_age_spread", "best_epoch", "wall_s"]))
    table = pd.DataFrame(decades)
    wide = table.pivot_table(index="decade", columns="pipeline", values="mae").reindex(DECADES)
    wide.insert(0, "n", table.groupby("decade")["n"].first().reindex(DECADES))
    wide["median guess"] = table.groupby("decade")["median_guess_mae"].first().reindex(DECADES)
    print("\nAge MAE (years) per true decade, test split")
    print(markdown(wide.reset_index().to_dict("records"), ["decade", *wide.columns]))
    save("multitask", {"rows": rows, "age_by_decade": decades})
    return rows


ABLATIONS_03 = ["ema_decay=None", "warmup_epochs=1.2", "augment='none'", "augment='medium'", "augment='heavy'",
                "drop_path_rate=0.0", "label_smoothing=0.0"]


ABLATIONS_07 = ["s=16.0", "s=30.0"]
ABLATIONS_08 = ["lr=1e-3", "augment='light'", "race_class_weights=False", "loss_weights=(1.0, 1.0, 5.0)"]


def parse_change(text: str) -> dict:
    """``"a=1,b='x'"`` -> ``{"a": 1, "b": "x"}`` (values are Python literals)."""
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key.strip()] = ast.literal_eval(value.strip())
    return out


def cmd_ablate(notebook: str, dataset: str, changes: list[str], seeds: list[int]) -> list[dict]:
    rows = []
    for change in ["", *changes]:
        values = parse_change(change)
        for seed in seeds:
            if notebook == "03":
                r = pipeline_classifier("03_convnext_from_scratch", "paper", dataset, seed, **values)
                metric = {"test acc": r["test_acc"], "final train acc": r["final_train_acc"]}
            elif notebook == "07":
                r = pipeline_arcface(seed, **values)
                metric = {k: r[k] for k in ("pairs_auc", "pairs_eer", "open_set_acc_cv", "rank1_known", "dev_acc",
                                            "final_train_acc")}
            else:
                r = pipeline_multitask(seed, **values)
                metric = {k: r[k] for k in ("gender_acc", "race_acc", "race_balanced_acc", "age_mae")}
            rows.append({"change": change or "(recipe at CPU scale)", "seed": seed, **metric,
                         "best epoch": r["best_epoch"], "wall s": r["wall_s"], "settings": describe(r)})
    columns = ["change", "seed", *[k for k in rows[0] if k not in ("change", "seed", "settings", "best epoch",
                                                                  "wall s")], "best epoch", "wall s"]
    print(f"\nNotebook {notebook} pipeline on {dataset}, one change at a time")
    print(markdown(rows, columns))
    save(f"ablate_{notebook}_{dataset}", {"rows": rows})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["convnext", "transfer", "arcface", "multitask", "ablate", "all"])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default per command)")
    parser.add_argument("--notebook", default="03", choices=["03", "07", "08"], help="ablate: which pipeline")
    parser.add_argument("--dataset", default="pins", choices=["pins", "att", "utkface"], help="ablate: which data")
    parser.add_argument("--change", action="append", default=None,
                        help="ablate: one change, e.g. ema_decay=None or 'warmup_epochs=1,ema_decay=None'")
    parser.add_argument("--epochs-03", type=int, nargs=2, default=None, metavar=("PINS", "ATT"),
                        help=f"notebook 03's epoch budget on Pins and AT&T (default {EPOCHS_03['pins']} "
                             f"{EPOCHS_03['att']}); results then go to realdata_convnext_<PINS>_<ATT>ep.json")
    parser.add_argument("--datasets", nargs="+", default=["pins", "att"], choices=["pins", "att"],
                        help="convnext: which data")
    common_args(parser)
    args = parser.parse_args(argv)
    setup(args)
    suffix = ""
    if args.epochs_03 is not None:
        EPOCHS_03.update(pins=args.epochs_03[0], att=args.epochs_03[1])
        suffix = f"_{args.epochs_03[0]}_{args.epochs_03[1]}ep"
    try:
        config.realdata()
    except FileNotFoundError as err:
        print(f"skipped: {err}")
        return
    todo = ["convnext", "multitask", "arcface", "transfer"] if args.command == "all" else [args.command]
    for command in todo:
        if command == "convnext":
            jobs = [job for job in CLASSIFIERS if job[2] in args.datasets]
            cmd_classifiers(f"convnext{suffix}", jobs, args.seeds or ([0] if args.smoke else [0, 1]))
        elif command == "transfer":
            cmd_classifiers("transfer", TRANSFER, args.seeds or [0])
        elif command == "arcface":
            cmd_arcface(args.seeds or [0])
        elif command == "multitask":
            cmd_multitask(args.seeds or [0])
        elif command == "ablate":
            defaults = {"03": ABLATIONS_03, "07": ABLATIONS_07, "08": ABLATIONS_08}[args.notebook]
            dataset = {"07": "pins35", "08": "utkface"}.get(args.notebook, args.dataset)
            cmd_ablate(args.notebook, dataset, args.change or defaults, args.seeds or [0])
    if args.command == "all" and args.smoke:
        cmd_ablate("03", "att", ["ema_decay=None"], [0])
        cmd_ablate("08", "utkface", ["lr=1e-3"], [0])


if __name__ == "__main__":
    main()
