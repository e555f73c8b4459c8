"""The results of every training notebook in one table, its plots, and the README's results table made from it.

Each training notebook appends one entry per run to the registry (:mod:`helpers.results`) with metrics of its
own; :data:`HEADLINES` names each notebook's task and the metric that ranks its runs. The README's table is
generated, never typed: ``python -m helpers.report`` (or notebook 11) writes the best run of each notebook
between the README's marker comments ``<!-- results:start -->`` and ``<!-- results:end -->``.
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from helpers import config, results
from helpers.files import atomic_write

HEADLINES = {  # notebook -> (task, the metric that ranks its runs; higher is better)
    "03_convnext_from_scratch": ("identity classification, from scratch", "val_acc"),
    "04_resnet50": ("identity classification, fine-tuned", "val_acc"),
    "05_mobilenetv2": ("identity classification, fine-tuned", "val_acc"),
    "06_inception_resnet_v1": ("identity classification, fine-tuned", "val_acc"),
    "07_arcface_verification": ("open-set identification (ArcFace)", "open_set_acc"),
    "08_multitask_fairface": ("gender, race and age (FairFace)", "gender_acc"),
    "09_dualhead_facecom": ("gender + identity (FACECOM)", "combined_score"),
    "10_adience_transfer": ("gender, Adience test folds", "gender_acc"),
}
COLUMNS = ["notebook", "task", "metric", "value", "folds", "model", "parameters", "images_per_s", "train_seconds", "device",
           "profile", "recorded", "run_dir"]
START, END = "<!-- results:start -->", "<!-- results:end -->"
README = config.REPO_ROOT / "README.md"


def entries(profile: str | None = None) -> list[dict]:
    """Registry entries of ``profile`` (None: the active profile's; ``"all"``: every entry), oldest first."""
    return results.entries(None if profile == "all" else profile or config.profile().name)


def headline(entry: Mapping) -> tuple[str, str]:
    """``(task, metric)`` of an entry: its notebook's :data:`HEADLINES`, else no task and its first metric."""
    return HEADLINES.get(entry["notebook"], ("", next(iter(entry.get("metrics") or {}), "")))


def table(rows: Sequence[Mapping]) -> pd.DataFrame:
    """One row per registry entry: notebook, task, headline metric and value, model, parameters, training
    images/s, training seconds, device, profile, when, and the run folder."""
    frame = []
    for entry in rows:
        task, metric = headline(entry)
        timing = entry.get("timing") or {}
        folds = (entry.get("settings") or {}).get("folds")
        folds = len(folds) if isinstance(folds, (list, tuple)) else None
        frame.append({"notebook": entry["notebook"], "task": f"{task}, mean of {folds}" if folds else task,
                      "metric": metric, "value": (entry.get("metrics") or {}).get(metric), "folds": folds,
                      "model": entry["model"],
                      "parameters": timing.get("parameters"), "images_per_s": timing.get("train_images_per_s"),
                      "train_seconds": timing.get("train_seconds"), "device": entry.get("device"),
                      "profile": entry.get("profile"), "recorded": entry.get("time"), "run_dir": entry.get("run_dir")})
    return pd.DataFrame(frame, columns=COLUMNS).astype({"value": float, "folds": float})


def best(frame: pd.DataFrame) -> pd.DataFrame:
    """The best row of each notebook by its headline value (ties: the newest), notebooks in order; among
    cross-validated runs only those over the most folds compete (a 1-fold run never stands for the mean). The
    index keeps the rows' positions in :func:`table` (and so in the entries it was made from)."""
    scored = frame.dropna(subset=["value"])
    if scored.empty:
        return scored
    most = scored.groupby("notebook")["folds"].transform("max")
    scored = scored[most.isna() | (scored["folds"] == most)]
    newest_first = scored.iloc[::-1]
    return scored.loc[newest_first.groupby("notebook")["value"].idxmax()].sort_values("notebook")


def best_entries(rows: Sequence[Mapping], notebooks: Sequence[str] | None = None) -> dict[str, dict]:
    """The entry behind each notebook's best row (only ``notebooks`` when given)."""
    chosen = best(table(rows))
    return {row.notebook: rows[i] for i, row in chosen.iterrows() if notebooks is None or row.notebook in notebooks}


def _figure(size: tuple[float, float]) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    plt.close(fig)
    return fig, ax


def throughput_plot(frame: pd.DataFrame) -> Figure:
    """Each run's headline value against its training throughput (log scale), one colour per notebook."""
    fig, ax = _figure((7.5, 4.5))
    shown = frame.dropna(subset=["value", "images_per_s"])
    for notebook, runs in shown.groupby("notebook"):
        ax.scatter(runs["images_per_s"], runs["value"], label=notebook, s=36)
        for _, run in runs.iterrows():
            ax.annotate(run["model"], (run["images_per_s"], run["value"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    if shown.empty:
        ax.text(0.5, 0.5, "no run recorded its throughput yet", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.set_xscale("log")
        ax.legend(fontsize=7, loc="best")
    ax.set(xlabel="training images per second (log scale)", ylabel="headline metric",
           title="accuracy against throughput")
    return fig


def best_plot(chosen: pd.DataFrame) -> Figure:
    """The best headline value of each notebook as bars, labelled with its metric and model."""
    fig, ax = _figure((7.5, 0.45 * max(len(chosen), 1) + 1.2))
    ax.barh(chosen["notebook"], chosen["value"], color="tab:blue")
    for y, (_, row) in enumerate(chosen.iterrows()):
        ax.text(row["value"], y, f" {row['value']:.3f} {row['metric']} · {row['model']}", va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="headline metric", title="best run per notebook", xlim=(0, max(1.0, *chosen["value"], 0) * 1.45))
    return fig


def _score(metric: str, value: float) -> str:
    return f"{100 * value:.1f}%" if 0 <= value <= 1 and "loss" not in metric and "mae" not in metric else f"{value:.3g}"


def _duration(seconds: float | None) -> str:
    if seconds is None or np.isnan(seconds):
        return ""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _number(value: float | None, digits: str = ".0f", scale: float = 1.0, unit: str = "") -> str:
    return "" if value is None or np.isnan(value) else f"{value / scale:{digits}}{unit}"


def markdown(chosen: pd.DataFrame, profile: str) -> str:
    """The README's results table: the best run of each notebook, and where the figures come from."""
    stamp = datetime.now().strftime("%Y-%m-%d")
    note = (f"_Generated by `python -m helpers.report` from the results registry (profile `{profile}`) on {stamp}; "
            "do not edit by hand._")
    if chosen.empty:
        return f"{note}\n\nNo results recorded yet: run the training notebooks (03-10) first."
    lines = ["| Notebook | Task | Model | Metric | Score | Parameters | Train img/s | Training time | Device |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, row in chosen.iterrows():
        lines.append(f"| {row['notebook']} | {row['task']} | {row['model']} | {row['metric']} | "
                     f"{_score(row['metric'], row['value'])} | {_number(row['parameters'], '.1f', 1e6, 'M')} | "
                     f"{_number(row['images_per_s'])} | {_duration(row['train_seconds'])} | {row['device']} |")
    return f"{note}\n\n" + "\n".join(lines)


def replace_between_markers(text: str, block: str) -> str:
    """``text`` with everything between :data:`START` and :data:`END` replaced by ``block``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"Expected one {START} followed by one {END} in the README; add them where the results "
                         "table belongs.")
    head, rest = text.split(START)
    return f"{head}{START}\n{block}\n{END}{rest.split(END, 1)[1]}"


def write_readme(block: str, path: str | Path | None = None) -> Path:
    """Write ``block`` between the markers of the README at ``path`` (default: the checkout's README.md)."""
    path = Path(path or README)
    text = replace_between_markers(path.read_text(), block)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="full", help="registry entries of this profile, or 'all' (default: full)")
    parser.add_argument("--readme", type=Path, default=README, help="the README holding the markers")
    parser.add_argument("--print", action="store_true", help="print the table instead of writing the README")
    args = parser.parse_args(argv)
    block = markdown(best(table(entries(args.profile))), args.profile)
    print(block if args.print else f"wrote the results table into {write_readme(block, args.readme)}")


if __name__ == "__main__":
    main()
