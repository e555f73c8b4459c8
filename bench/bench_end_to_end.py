"""End-to-end training throughput on real JPEGs: the old input path (PIL decode + torchvision augmentation in CPU
workers), the new one (packed JPEGs decoded by the workers, augmented in batches on the training device) and
synthetic batches already on the device (the model-bound ceiling), as ratios in one run, through the
notebooks' own ``data.loader`` and ``engine.fit``.

Faces: ``../shared/realdata`` (UTKFace 200 px, Pins crops of varied sizes, FACECOM frames and phone photos),
or any folder of JPEGs given with ``--images``, repeated to fill ``--steps`` batches, trained at 224 px.

Each arm trains two epochs and reports the second. An epoch starts with the workers' first batches in flight
while the GPU waits, which a real epoch (HW2P2: ~1,100 batches of 128) amortises: so on a GPU an epoch here is
100 batches (the H100 rows of the README used 12, which weighs that start 8x more).

    python bench/bench_end_to_end.py      # on a GPU: ~5 min for the three models; on 2 CPU cores: ~5 min
    python bench/bench_end_to_end.py --models convnext_tiny --levels light heavy --workers 4
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import build_model  # bench/bench.py: the same models as the engine ratios
from helpers import config, data, engine
from helpers.imageio import list_images

MODELS = ("convnext_tiny", "resnet50", "mobilenetv2_100")
SETS = ("utkface_dev", "pins_dev", "facecom_task_a")


def faces(images: Path | None, per_set: int) -> list[str]:
    """Real JPEGs: ``per_set`` from each real set (or every image of ``images``)."""
    if images is not None:
        return [str(p) for p in list_images(images)]
    return [str(p) for name in SETS for p in list_images(config.realdata(name))[:per_set]]


def frame_of(paths: list[str], n: int, classes: int) -> pd.DataFrame:
    rows = [paths[i % len(paths)] for i in range(n)]
    return pd.DataFrame({"path": rows, "label": [i % classes for i in range(n)]})


class OnDevice:
    """Synthetic batches already on the device, with the train loader's length (the ceiling)."""

    def __init__(self, n: int, batch: int, size: int, classes: int, device: torch.device):
        g = torch.Generator(device="cpu").manual_seed(0)
        self.batches = [(torch.randn(batch, 3, size, size, generator=g).to(device),
                         torch.randint(0, classes, (batch,), generator=g).to(device)) for _ in range(n // batch)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def train_speed(name: str, loader, classes: int) -> float:
    """Images/s of the second epoch of ``engine.fit`` (the first warms cudnn and the workers up)."""
    torch.manual_seed(0)
    cfg = engine.TrainConfig(epochs=2, lr=1e-4, scheduler="none", progress=False, tensorboard=False)
    with tempfile.TemporaryDirectory() as tmp:
        history = engine.fit(build_model(name, classes), loader, None, cfg, Path(tmp) / "run")
    return float(history["train_images_per_s"].iloc[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--levels", nargs="+", default=["light"], help="augmentation levels of the new path")
    parser.add_argument("--workers", type=int, help="default: 4 on a GPU, 1 on CPU")
    parser.add_argument("--batch-size", type=int, help="default: 128 on a GPU, 16 on CPU")
    parser.add_argument("--steps", type=int, help="batches per epoch; default: 100 on a GPU, 3 on CPU")
    parser.add_argument("--old-steps", type=int, help="batches of the (slow) old path; default: 8 / 3")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=Path, help="a folder of JPEGs instead of ../shared/realdata")
    parser.add_argument("--per-set", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = config.device()
    gpu = device.type == "cuda"
    for name, on_gpu, on_cpu in (("workers", 4, 1), ("batch_size", 128, 16), ("steps", 100, 3), ("old_steps", 8, 3)):
        if getattr(args, name) is None:
            setattr(args, name, on_gpu if gpu else on_cpu)
    classes, size, batch = 1000, args.image_size, args.batch_size
    paths = faces(args.images, args.per_set)
    frame, old_frame = frame_of(paths, batch * args.steps, classes), frame_of(paths, batch * args.old_steps, classes)
    rows = []
    for name in args.models:
        ceiling = train_speed(name, OnDevice(batch * args.steps, batch, size, classes, device), classes)
        row = {"model": name, "synthetic_img_s": ceiling}
        for level in args.levels:
            new = data.loader(frame, size, batch, train=True, augment=level, num_workers=args.workers,
                              pipeline="gpu")
            old = data.loader(old_frame, size, batch, train=True, augment=level, num_workers=args.workers,
                              pipeline="cpu")
            row[f"new_{level}_img_s"] = train_speed(name, new, classes)
            row[f"old_{level}_img_s"] = train_speed(name, old, classes)
            row[f"new_{level}_vs_synthetic"] = row[f"new_{level}_img_s"] / ceiling
            row[f"new_{level}_vs_old"] = row[f"new_{level}_img_s"] / row[f"old_{level}_img_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"\n{device_name}, {size} px, batch {batch}, {args.workers} workers, {len(paths)} real JPEGs")
    print(pd.DataFrame(rows).set_index("model").round(2).to_string())
    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "workers": args.workers, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
