"""Images/s of the training loader alone at 224 px: today's PIL decode + torchvision v2 "heavy" augmentation
in CPU workers (old) against the packed path as the notebooks build it (new: ``make_device_loader``; packed
uint8 JPEGs decoded by the workers, then ``BatchAugment("heavy")`` on whole batches, in the workers on a CPU
device and on the GPU with ``--device cuda``), same images, same worker counts; plus the per-image costs
behind them and the size and memory of a pack, extrapolated to 140,000 images.

Images: a subsample of each real set in ../shared/realdata (UTKFace 200 px, Pins crops of varied sizes,
FACECOM 250 px frames and 2048x3072 phone photos); without them, synthetic JPEGs of the same sizes.

    python bench/bench_loader.py                                 # 2-core CPU: workers 0,1,2 (~3 min idle)
    python bench/bench_loader.py --device cuda --workers 0,2,4,8 # augmentation on the GPU
    python bench/bench_loader.py --gpu-aug --device cuda          # also kornia vs the fused path per batch

Each figure is the median of ``--passes`` timed passes after one warm-up pass (workers persist); the
loaders take turns pass by pass, so a busy machine slows them alike. The last line
is ``SUMMARY loader_speedup=<new/old at the largest worker count>``.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import config, gpu_augment, transforms
from helpers.datasets import FaceDataset
from helpers.gpu_augment import BatchAugment
from helpers.imageio import list_images, load_rgb
from helpers.packed import DeviceLoader, PackedDataset, PackedImages, make_device_loader, pack

warnings.filterwarnings("ignore", "The image decoding and encoding capabilities", DeprecationWarning)
MEAN, STD = transforms.NORMS["imagenet"]
SETS = ("utkface_dev", "pins_dev", "facecom_task_a")
RESULTS = Path(__file__).resolve().parent / "results"
# On the CPU the main process runs single-threaded, as DataLoader workers do, so N workers use N + 1 cores:
# with torch's default of one thread per core every batched op waits for a thread whose core a worker (or
# another process) holds. Measured on the shared 2-core box: uint8 batches alone 118 img/s with 2 threads,
# 1,200-1,800 img/s with 1.
THREADS = 1


def old_transform(size: int = 224) -> v2.Compose:
    """Today's CPU recipe for the "heavy" level (PIL in, normalised tensor out): ``helpers.transforms``'."""
    return transforms.build("heavy", size, train=True)


def synthetic_images(folder: Path, per_set: int) -> list[Path]:
    """JPEGs shaped like the real sets (200 px squares, 100-560 px crops, 250 px frames, 2% phone photos)."""
    rng = np.random.default_rng(0)
    sizes = [(200, 200)] * per_set + [tuple(rng.integers(100, 560, 2)) for _ in range(per_set)]
    sizes += [(2048, 3072) if i % 50 == 0 else (250, 250) for i in range(per_set)]
    paths = []
    for i, (w, h) in enumerate(sizes):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((int(w), int(h)), Image.Resampling.BICUBIC)
        paths.append(folder / f"synthetic_{i:05d}.jpg")
        image.save(paths[-1], quality=90)
    return paths


def source_images(per_set: int, scratch: Path) -> tuple[list[Path], str]:
    """An even subsample of each real set, or synthetic stand-ins when the real sets are absent."""
    try:
        paths = []
        for name in SETS:
            found = list_images(config.realdata(name))
            paths += found[:: max(1, len(found) // per_set)][:per_set]
        return paths, f"real JPEGs ({per_set} each of {', '.join(SETS)})"
    except FileNotFoundError:
        folder = scratch / "synthetic"
        folder.mkdir()
        return synthetic_images(folder, per_set), f"synthetic JPEGs shaped like {', '.join(SETS)}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_images_per_s(loaders: dict, device: torch.device, passes: int) -> dict[str, list[float]]:
    """Images/s of each loader over ``passes`` full passes, taken in turn (so they share the machine's load),
    after one warm-up pass each."""
    speeds = {name: [] for name in loaders}
    for i in range(passes + 1):
        for name, batches in loaders.items():
            _sync(device)
            start, seen = time.perf_counter(), 0
            for images, _ in batches:
                seen += len(images)
            _sync(device)
            if i:
                speeds[name].append(seen / (time.perf_counter() - start))
    return speeds


def loaders(paths: list[Path], pack_file: Path, workers: int, batch: int, device: torch.device, size: int):
    """The old, new and new-without-augmentation (decode only) loaders over the same images."""
    common = {"batch_size": batch, "num_workers": workers, "persistent_workers": workers > 0, "shuffle": True,
              "pin_memory": device.type == "cuda"}
    frame = pd.DataFrame({"path": [str(p) for p in paths]})
    old = DataLoader(FaceDataset(frame, old_transform(size), target=None),
                     generator=torch.Generator().manual_seed(0), **common)
    packed = PackedDataset(pack_file)
    new = make_device_loader(packed, batch, device, BatchAugment("heavy", size, MEAN, STD), shuffle=True,
                             num_workers=workers)
    decode = DeviceLoader(DataLoader(packed, generator=torch.Generator().manual_seed(0), **common), device)
    return {"old": old, "new": new, "decode only": decode}


def _ms_per_item(fn, items) -> tuple[float, list]:
    start = time.process_time()
    out = [fn(item) for item in items]
    return (time.process_time() - start) / len(items) * 1000, out


def per_image_costs(paths: list[Path], pack_file: Path, size: int, batch: int) -> dict:
    """Single-thread CPU milliseconds per image of each stage, on an even sample of about 96 images."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = list(range(0, len(paths), max(1, len(paths) // 96)))
    packed, data = PackedImages(pack_file), pack_file.read_bytes()
    blobs = [data[packed.offsets[i]:packed.offsets[i + 1]] for i in rows]
    old_decode, pil_images = _ms_per_item(load_rgb, [paths[i] for i in rows])
    old_augment, _ = _ms_per_item(old_transform(size), pil_images)
    tv_decode, decoded = _ms_per_item(packed.__getitem__, rows)
    pil_decode, _ = _ms_per_item(lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB")), blobs)
    stack = torch.stack(decoded).repeat(-(-batch // len(decoded)), 1, 1, 1)[:batch]
    augment = BatchAugment("heavy", size, MEAN, STD)
    augment(stack)
    start = time.process_time()
    for _ in range(3):
        augment(stack)
    new_augment = (time.process_time() - start) / (3 * batch) * 1000
    torch.set_num_threads(threads)
    return {"old decode (PIL, source files)": old_decode, "old augment (torchvision v2 on PIL)": old_augment,
            "new decode (torchvision.io, pack)": tv_decode, "new decode (PIL, pack)": pil_decode,
            "new augment (BatchAugment heavy, CPU)": new_augment}


def _rss_mb() -> dict[str, float]:
    """Resident memory of this process: anonymous (its own) and file-backed (mapped page cache), MB."""
    lines = Path("/proc/self/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile")}


def memory_child(paths_file: Path, out: Path, size: int) -> dict:
    """Run in a fresh process: RSS growth while packing (peak, sampled every 5 ms), then while reading every
    image back through the memory map."""
    paths = paths_file.read_text().splitlines()
    before, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], sum(_rss_mb().values()))

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    pack(paths, out, size, progress=False)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    images = PackedImages(out)
    reading = _rss_mb()
    for i in range(len(images)):
        images[i]
    after = _rss_mb()
    return {"images": len(paths), "bytes": out.stat().st_size, "pack_s": seconds,
            "pack_rss_growth_mb": peak[0] - sum(before.values()),
            "read_anon_growth_mb": after["RssAnon"] - reading["RssAnon"],
            "read_file_growth_mb": after["RssFile"] - reading["RssFile"]}


def memory(paths: list[Path], scratch: Path, size: int) -> list[dict]:
    """Pack size and memory for a quarter of the images and for all, each in its own process."""
    rows = []
    for n in (len(paths) // 4, len(paths)):
        listing = scratch / f"paths_{n}.txt"
        listing.write_text("\n".join(str(p) for p in paths[:n]))
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(listing), "--size", str(size)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def kornia_vs_fused(images: torch.Tensor, size: int, repeats: int) -> dict:
    """Milliseconds per batch: kornia's per-sample modules vs the fused path (same steps, no RandAugment),
    and the full fused "heavy" level."""
    import kornia.augmentation as K

    kornia = K.AugmentationSequential(
        K.RandomResizedCrop((size, size), scale=(0.8, 1.0)), K.RandomHorizontalFlip(),
        K.RandomPerspective(0.2, p=0.3), K.ColorJitter(0.2, 0.2, 0.2, 0.05, p=1.0),
        K.RandomRotation(10.0, p=1.0), K.Normalize(torch.tensor(MEAN), torch.tensor(STD)),
        K.RandomErasing(p=0.25),
    ).to(images.device)
    no_randaug = dataclasses.replace(gpu_augment.LEVELS["heavy"], randaug_ops=0)
    runs = {"kornia (no RandAugment)": lambda: kornia(images.float().div(255)),
            "fused (no RandAugment)": BatchAugment(no_randaug, size, MEAN, STD).__call__,
            "fused heavy (per-sample RandAugment)": BatchAugment("heavy", size, MEAN, STD).__call__}
    result = {}
    for name, fn in runs.items():
        args = () if name.startswith("kornia") else (images,)
        fn(*args)
        times = []
        for _ in range(repeats):
            _sync(images.device)
            start = time.perf_counter()
            fn(*args)
            _sync(images.device)
            times.append((time.perf_counter() - start) * 1000)
        result[name] = statistics.median(times)
    return result


def device_tag(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name()  # "NVIDIA H100 80GB HBM3" -> "h100", "Tesla T4" -> "t4"
        return next(t for t in name.split() if any(c.isdigit() for c in t)).split("-")[0].lower()
    return f"cpu_{os.cpu_count()}core"


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:,.1f}" if isinstance(v, float) else str(v) for v in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="0,1,2", help="comma-separated DataLoader worker counts")
    parser.add_argument("--device", default="cpu", help="where BatchAugment runs (cpu or cuda)")
    parser.add_argument("--per-set", type=int, default=128, help="images taken from each set")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--threads", type=int,
                        help="torch threads of the main process (default: 1 on cpu, torch's own on cuda)")
    parser.add_argument("--gpu-aug", action="store_true", help="also time kornia vs the fused path per batch")
    parser.add_argument("--json", type=Path, help="default: bench/results/<device>_loader.json")
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.memory_child.with_suffix(".pack"), args.size)))
        return
    device = torch.device(args.device)
    if args.threads or device.type == "cpu":  # see THREADS
        torch.set_num_threads(args.threads or THREADS)
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        paths, source = source_images(args.per_set, scratch)
        start = time.perf_counter()
        pack_file = pack(paths, scratch / "bench.pack", args.size, progress=False)
        pack_s = time.perf_counter() - start
        print(f"{len(paths)} {source}; packed in {pack_s:.1f} s; device {device}, torch threads "
              f"{torch.get_num_threads()}, {platform.processor() or platform.machine()}", flush=True)
        results = {"source": source, "images": len(paths), "image_size": args.size, "batch": args.batch,
                   "device": device_tag(device), "torch_threads": torch.get_num_threads(), "pack_s": pack_s,
                   "loader": []}
        for n in workers:
            row = {"workers": n}
            candidates = loaders(paths, pack_file, n, args.batch, device, args.size)
            speeds = interleaved_images_per_s(candidates, device, args.passes)
            for name, values in speeds.items():
                row[name], row[f"{name} all"] = statistics.median(values), values
            row["speedup"] = row["new"] / row["old"]
            results["loader"].append(row)
            print(f"workers {n}: old {row['old']:.0f} img/s, new {row['new']:.0f} img/s "
                  f"({row['speedup']:.2f}x), decode only {row['decode only']:.0f} img/s", flush=True)
        results["per_image_ms"] = per_image_costs(paths, pack_file, args.size, args.batch)
        results["memory"] = memory(paths, scratch, args.size)
        if args.gpu_aug:
            images = PackedImages(pack_file)
            batch = torch.stack([images[i % len(images)] for i in range(args.batch)]).to(device)
            results["kornia_vs_fused_ms_per_batch"] = kornia_vs_fused(batch, args.size, repeats=3)
    header = ["workers", "old: PIL + v2 heavy", f"new: pack + BatchAugment on {device.type}", "new/old",
              "new, decode only"]
    print_table(f"Loader alone, {args.size} px, batch {args.batch}, {source} (images/s, median of "
                f"{args.passes})", header,
                [[r["workers"], r["old"], r["new"], f"{r['speedup']:.2f}x", r["decode only"]]
                 for r in results["loader"]])
    print_table("CPU cost per image (single thread, ms)", ["stage", "ms"],
                [[k, f"{v:.2f}"] for k, v in results["per_image_ms"].items()])
    scale = 140_000
    print_table(f"Pack size and memory (extrapolated to {scale:,} images at {args.size} px)",
                ["images", "KiB/img", f"GB at {scale:,}", "pack s", "RSS growth packing, MB",
                 "reading all: anon / mapped file RSS growth, MB"],
                [[m["images"], m["bytes"] / m["images"] / 1024, m["bytes"] / m["images"] * scale / 1e9,
                  m["pack_s"], m["pack_rss_growth_mb"],
                  f"{m['read_anon_growth_mb']:.1f} / {m['read_file_growth_mb']:.1f}"]
                 for m in results["memory"]])
    if args.gpu_aug:
        print_table(f"Augmentation of one batch of {args.batch} on {device} (ms, median of 3)",
                    ["path", "ms"],
                    [[k, v] for k, v in results["kornia_vs_fused_ms_per_batch"].items()])
    out = args.json or RESULTS / f"{results['device']}_loader.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out}\nSUMMARY loader_speedup={results['loader'][-1]['speedup']:.2f}")


if __name__ == "__main__":
    main()
