"""Training throughput of ``engine.fit`` against two plain PyTorch loops, ``torch.compile``'s pay-back, and the
input pipeline's speed-up; ends with one machine-readable ``SUMMARY`` line.

Plain loops, on the same model, batches and optimizer:
* ``fp32``: fp32, the default memory format, blocking transfers: what a first loop looks like;
* ``amp``: what a competent user writes: the same autocast dtype as the engine (bf16 on Ampere+, fp16 with a
  GradScaler on older GPUs, none on CPU), the same memory format (channels_last) and non-blocking transfers.
``engine/amp`` is the engine's own cost (it must stay >= 0.97); ``engine/fp32`` is what AMP and channels_last buy.
Each model runs in its own subprocess (peak RSS per model); arms are interleaved over the repeats, each a warm-up
epoch then a timed epoch; medians are reported. ``--compile`` adds the engine with ``torch.compile``: seconds to
compile (first epoch minus a steady one) against the steady-state speed, and the epochs of the notebook-03
recipe (140,000 images) after which it pays back (the plain arms are skipped then). The loader figure comes from ``bench/bench_loader.py``
(old PIL path vs packed JPEGs + batched augmentation, same workers).

    python bench/bench.py                         # sizes chosen for the device; ~5 min on 2 CPU cores
    python bench/bench.py --models convnext_tiny --repeats 5 --compile
"""
from __future__ import annotations

import argparse
import gc
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
RECIPE_IMAGES = 140_000  # HW2P2 training images: one epoch of notebook 03
RESULTS = Path(__file__).resolve().parent / "results"
# One torch thread on CPU: with two, every op waits for both threads, and on a shared 2-core machine one of them
# is often descheduled: 5 interleaved repeats of ResNet-50 then still spread from 0.90 to 1.09 of the plain loop.
CPU_THREADS = 1


def sizes(device: torch.device) -> dict:
    """Small images on CPU; 224 px and a large batch on GPU."""
    if device.type == "cuda":
        return {"image_size": 224, "batch_size": 128, "steps": 25, "num_classes": 1000}
    return {"image_size": 64, "batch_size": 16, "steps": 8, "num_classes": 1000, "threads": CPU_THREADS}


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


def plain_epoch(model, loader, optimizer, device, dtype, channels_last: bool, scaler) -> float:
    """One epoch of a plain loop; ``dtype`` None is fp32. Returns images/s."""
    fmt = torch.channels_last if channels_last else torch.preserve_format
    model.train()
    _sync(device)
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        x = x.to(device, non_blocking=channels_last, memory_format=fmt)
        y = y.to(device, non_blocking=channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        seen += len(x)
    _sync(device)
    return seen / (time.perf_counter() - start)


def run_plain(name: str, s: dict, loader, device, competent: bool) -> float:
    torch.manual_seed(0)
    dtype = engine.resolve_amp("auto", device) if competent else None
    fmt = torch.channels_last if competent else torch.preserve_format
    model = build_model(name, s["num_classes"]).to(device, memory_format=fmt)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    plain_epoch(model, loader, optimizer, device, dtype, competent, scaler)  # warm-up epoch
    return plain_epoch(model, loader, optimizer, device, dtype, competent, scaler)


def run_engine(name: str, s: dict, loader, device, compile_model: bool = False) -> tuple[float, float]:
    """Images/s of the epoch after the warm-up epoch, and the warm-up epoch's extra seconds."""
    torch.manual_seed(0)
    model = build_model(name, s["num_classes"])
    cfg = engine.TrainConfig(epochs=2, lr=1e-4, optimizer="adamw", scheduler="none", progress=False,
                             tensorboard=False, compile=compile_model)
    with tempfile.TemporaryDirectory() as tmp:
        history = engine.fit(model, loader, None, cfg, Path(tmp) / "run")
    n = s["batch_size"] * s["steps"]
    first, steady = history["train_images_per_s"].tolist()
    return steady, n / first - n / steady


def measure_one(name: str, repeats: int, compile_model: bool) -> dict:
    """The three arms (or, with ``compile_model``, the engine eager and compiled) for one model."""
    device = config.device()
    s = sizes(device)
    if "threads" in s:
        torch.set_num_threads(s["threads"])
    loader = make_loader(s, device)
    out = {"model": name, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", **s}
    if compile_model:
        eager = run_engine(name, s, loader, device)[0]
        steady, compile_s = run_engine(name, s, loader, device, compile_model=True)
        saved_per_epoch = RECIPE_IMAGES / eager - RECIPE_IMAGES / steady
        return {**out, "engine_img_s": eager, "compiled_img_s": steady, "compile_s": compile_s,
                "payback_epochs": compile_s / saved_per_epoch if saved_per_epoch > 0 else float("inf")}
    arms = {"fp32": lambda: run_plain(name, s, loader, device, competent=False),
            "amp": lambda: run_plain(name, s, loader, device, competent=True),
            "engine": lambda: run_engine(name, s, loader, device)[0]}
    speeds = {label: [] for label in arms}
    for r in range(repeats):  # interleaved, rotating which goes first
        order = list(arms.items())
        for label, fn in order[r % 3:] + order[:r % 3]:
            gc.collect()  # the arm before left cycles behind: uncollected, they slowed the next arm by 8-18%
            speeds[label].append(fn())
    out.update({f"{label}_img_s": statistics.median(v) for label, v in speeds.items()}, all=speeds,
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["engine_vs_amp_plain"] = out["engine_img_s"] / out["amp_img_s"]
    out["engine_vs_fp32_plain"] = out["engine_img_s"] / out["fp32_img_s"]
    return out


def loader_result() -> dict | None:
    """``bench/bench_loader.py``'s latest result for this machine (``make bench`` runs it first), if any."""
    from bench_loader import device_tag

    path = RESULTS / f"{device_tag(config.device())}_loader.json"
    return json.loads(path.read_text()) if path.is_file() else None


def table(results: list[dict]) -> str:
    """Markdown: the three arms and both ratios, or the compile measurement."""
    if all("compiled_img_s" in r for r in results):
        head = ["| model | eager img/s | compiled img/s | compile s | pays back after (03 epochs) |", "|---|---|---|---|---|"]
        return "\n".join(head + [f"| {r['model']} | {r['engine_img_s']:.1f} | {r['compiled_img_s']:.1f} | "
                                 f"{r['compile_s']:.0f} | {r['payback_epochs']:.2f} |" for r in results])
    head = [("| model | fp32 plain img/s | AMP plain img/s | engine img/s | engine/AMP plain | engine/fp32 plain "
             "| peak RSS MB |"), "|---|---|---|---|---|---|---|"]
    return "\n".join(head + [f"| {r['model']} | {r['fp32_img_s']:.1f} | {r['amp_img_s']:.1f} | {r['engine_img_s']:.1f} "
                             f"| {r['engine_vs_amp_plain']:.2f} | {r['engine_vs_fp32_plain']:.2f} | "
                             f"{r['peak_rss_mb']:.0f} |" for r in results])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repeats per arm (medians; a multiple of 3 gives each arm each place)")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.repeats, args.compile)))
        return
    results = []
    for name in args.models:
        command = [sys.executable, __file__, "--one", name, "--repeats", str(args.repeats)]
        out = subprocess.run(command + (["--compile"] if args.compile else []), check=True, capture_output=True,
                             text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{name}: {json.dumps({k: v for k, v in results[-1].items() if k != 'all'})}", flush=True)
    first = results[0]
    print(f"\nTraining throughput ({first['device']}, {first['image_size']} px, batch {first['batch_size']}, "
          f"median of {args.repeats}, interleaved)\n{table(results)}")
    loader = loader_result()
    speedup = loader["loader"][-1]["speedup"] if loader else float("nan")
    if loader:
        print(f"\nLoader alone ({loader['source']}, {loader['image_size']} px, {loader['loader'][-1]['workers']} "
              f"workers): new/old {speedup:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"training": results, "loader": loader}, indent=1))
    if args.compile:
        return
    worst = min(results, key=lambda r: r["engine_vs_amp_plain"])
    print(f"\nSUMMARY loader_speedup={speedup:.2f} engine_vs_amp_plain={worst['engine_vs_amp_plain']:.3f} "
          f"engine_vs_fp32_plain={worst['engine_vs_fp32_plain']:.3f}")


if __name__ == "__main__":
    main()
