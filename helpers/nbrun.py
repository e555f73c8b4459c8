"""Execute notebooks top to bottom with papermill (kernel ``python3``, an explicit per-cell timeout), with
papermill-style parameters injected after each notebook's ``parameters`` cell.

``python -m helpers.nbrun notebooks --out runs/executed`` is what ``make demo`` runs;
``python -m helpers.nbrun notebooks/03_convnext_from_scratch.ipynb -p EPOCHS 1 -p IMAGE_SIZE 40`` runs one
notebook with overrides (values are Python literals: ``None``, ``True``, ``1e-3``, ``"cs405"``; anything else
is a string).
"""
from __future__ import annotations

import argparse
import ast
import time
from pathlib import Path

import nbformat
import papermill

from helpers.config import REPO_ROOT, submissions_dir


def parse_value(text: str):
    """A parameter value from the command line: a Python literal, else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def execute(path: Path, out_dir: Path | None = None, timeout: int = 900,
            parameters: dict | None = None) -> nbformat.NotebookNode:
    """Run one notebook in its own folder with ``parameters``; write the executed copy to ``out_dir``."""
    path = Path(path)
    output = None
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        output = str(Path(out_dir) / path.name)
    return papermill.execute_notebook(str(path), output, parameters=parameters or {}, kernel_name="python3",
                                      cwd=str(path.parent), progress_bar=False, execution_timeout=timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", type=Path, help="a notebook, or a folder of numbered notebooks")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "executed")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a parameter for the notebooks' parameters cell (repeatable)")
    args = parser.parse_args(argv)
    parameters = {name: parse_value(value) for name, value in args.parameter}
    paths = [args.target] if args.target.suffix == ".ipynb" else sorted(args.target.glob("[0-9][0-9]_*.ipynb"))
    started = time.time()
    for path in paths:
        t0 = time.time()
        print(f"executing {path.name} {parameters or ''}...", flush=True)
        execute(path, args.out, args.timeout, parameters)
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
