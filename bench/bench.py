"""Training throughput of ``engine.fit`` against a plain PyTorch loop, and data-pipeline throughput.

Each model runs in its own subprocess (so peak RSS is per model). Inside it, the plain loop (fp32, no extras)
and ``engine.fit`` (its defaults for the device: bf16 autocast + channels_last on GPU) train the same model
architecture on the same in-memory batches, interleaved, for several repeats; each measurement is one
warm-up epoch then one timed epoch, and the median images/s is reported.

    python bench/bench.py                      # sizes chosen for the device
    python bench/bench.py --models convnext_tiny --repeats 5
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import config, engine

MODELS = ("convnext_tiny", "resnet50", "mobilenetv2_100")


def sizes(device: torch.device) -> dict:
    """Small images on CPU; 224 px and a large batch on GPU."""
    if device.type == "cuda":
        return {"image_size": 224, "batch_size": 128, "steps": 25, "num_classes": 1000}
    return {"image_size": 64, "batch_size": 16, "steps": 6, "num_classes": 1000}


def build_model(name: str, num_classes: int) -> torch.nn.Module:
    if name == "convnext_tiny":  # ours, written from scratch
        from helpers.models import convnext
        return convnext.create("convnext_tiny", num_classes=num_classes)
    import timm
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def make_loader(s: dict, device: torch.device) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    n = s["batch_size"] * s["steps"]
    x = torch.randn(n, 3, s["image_size"], s["image_size"], generator=g)
    y = torch.randint(0, s["num_classes"], (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=s["batch_size"], shuffle=False,
                      pin_memory=device.type == "cuda")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_epoch(model, loader, optimizer, device) -> float:
    """The reference: fp32, default memory format, blocking transfers; returns images/s."""
    model.train()
    _sync(device)
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(x)
    _sync(device)
    return seen / (time.perf_counter() - start)


def run_plain(name: str, s: dict, loader, device) -> float:
    torch.manual_seed(0)
    model = build_model(name, s["num_classes"]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    plain_epoch(model, loader, optimizer, device)  # warm-up epoch
    return plain_epoch(model, loader, optimizer, device)


def run_engine(name: str, s: dict, loader, device) -> float:
    torch.manual_seed(0)
    model = build_model(name, s["num_classes"])
    cfg = engine.TrainConfig(epochs=2, lr=1e-4, optimizer="adamw", scheduler="none", progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        history = engine.fit(model, loader, None, cfg, Path(tmp) / "run")
    return float(history["train_images_per_s"].iloc[-1])  # the epoch after the warm-up epoch


def measure_one(name: str, repeats: int) -> dict:
    device = config.device()
    s = sizes(device)
    loader = make_loader(s, device)
    speeds = {"plain": [], "engine": []}
    peak_gb = {"plain": 0.0, "engine": 0.0}
    for r in range(repeats):  # interleaved, alternating which goes first
        order = [("plain", run_plain), ("engine", run_engine)]
        for label, fn in order if r % 2 == 0 else order[::-1]:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            speeds[label].append(fn(name, s, loader, device))
            if device.type == "cuda":
                peak_gb[label] = max(peak_gb[label], torch.cuda.max_memory_allocated() / 2**30)
    plain, eng = speeds["plain"], speeds["engine"]
    out = {"model": name, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
           **s, "plain_img_s": statistics.median(plain), "engine_img_s": statistics.median(eng),
           "plain_all": plain, "engine_all": eng,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["gpu_max_allocated_gb"] = peak_gb
    out["ratio"] = out["engine_img_s"] / out["plain_img_s"]
    return out


def pipeline(workers: list[int], batches: int, image_size: int) -> list[dict]:
    """Decode + train transform throughput (images/s) for several worker counts."""
    from helpers import demo, transforms
    from helpers.datasets import FaceDataset, hw2p2, utkface

    try:
        frame, source = utkface.read(config.realdata("utkface_dev") / "images")["all"], "real UTKFace JPEGs"
    except FileNotFoundError:  # the synthetic twin, written under data/demo/ whatever the profile
        twin = demo.ensure("hw2p2", config.REPO_ROOT / "data" / "demo")
        frame, source = hw2p2.read_classification(twin)["train"], "demo twin (64 px JPEGs)"
    dataset = FaceDataset(frame.head(64 * batches), transforms.build("hw2p2", image_size, train=True),
                          target=None)
    rows = []
    for n in workers:
        loader = DataLoader(dataset, batch_size=64, num_workers=n, shuffle=False)
        start, seen = time.perf_counter(), 0
        for x, _ in loader:
            seen += len(x)
        rows.append({"workers": n, "images_per_s": seen / (time.perf_counter() - start), "source": source,
                     "image_size": image_size})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.repeats)))
        return
    results = []
    for name in args.models:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--repeats", str(args.repeats)],
                             check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{name}: plain {r['plain_img_s']:.1f} img/s, engine {r['engine_img_s']:.1f} img/s", flush=True)
    size = sizes(config.device())["image_size"]
    pipe = pipeline(args.workers, batches=4 if config.device().type == "cpu" else 16, image_size=size)
    print(f"\nTraining throughput ({results[0]['device']}, {size} px, batch {results[0]['batch_size']}, "
          f"median of {args.repeats}, interleaved)")
    print("| model | plain loop img/s | engine img/s | engine/plain | peak RSS MB | GPU max alloc GB plain / engine |")
    print("|---|---|---|---|---|---|")
    for r in results:
        mem = r.get("gpu_max_allocated_gb")
        gpu = f"{mem['plain']:.1f} / {mem['engine']:.1f}" if mem else "-"
        print(f"| {r['model']} | {r['plain_img_s']:.1f} | {r['engine_img_s']:.1f} | {r['ratio']:.2f} | "
              f"{r['peak_rss_mb']:.0f} | {gpu} |")
    print(f"\nData pipeline: decode + 'hw2p2' train transform at {size} px, {pipe[0]['source']}")
    print("| workers | images/s |\n|---|---|")
    for row in pipe:
        print(f"| {row['workers']} | {row['images_per_s']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"training": results, "pipeline": pipe}, indent=1))
    main_model = next((r for r in results if r["model"] == "convnext_tiny"), results[0])
    print(f"\nengine/plain training throughput ratio ({main_model['model']}): {main_model['ratio']:.2f}")


if __name__ == "__main__":
    main()
