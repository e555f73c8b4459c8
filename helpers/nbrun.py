"""Execute notebooks top to bottom with nbclient (kernel ``python3``, explicit per-cell timeout).

``python -m helpers.nbrun notebooks --out runs/executed`` is what ``make demo`` runs.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from helpers.config import REPO_ROOT, submissions_dir


def execute(path: Path, out_dir: Path | None = None, timeout: int = 900) -> nbformat.NotebookNode:
    """Run one notebook in its own folder; write the executed copy to ``out_dir`` when given."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_dir / path.name)
    return nb


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path, help="folder of numbered notebooks")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "executed")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    started = time.time()
    for path in sorted(args.folder.glob("[0-9][0-9]_*.ipynb")):
        t0 = time.time()
        print(f"executing {path.name} ...", flush=True)
        execute(path, args.out, args.timeout)
        print(f"  done in {time.time() - t0:.0f} s -> {args.out / path.name}", flush=True)
    print(f"\nAll notebooks executed in {time.time() - started:.0f} s. Wrote:")
    for path in sorted(args.out.glob("*.ipynb")):
        if path.stat().st_mtime >= started:
            print(f"  {path}")
    for path in sorted(submissions_dir().rglob("*.csv")):
        if path.stat().st_mtime >= started:
            print(f"  {path}")


if __name__ == "__main__":
    main()
