"""A results registry: every training notebook appends one JSON line; the results notebook reads them all."""
from __future__ import annotations

import json
import platform
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch

from helpers import config


def registry_path() -> Path:
    return config.runs_dir() / "results.jsonl"


def record(notebook: str, model: str, metrics: dict, settings: dict | None = None,
           timing: dict | None = None, run_dir: Path | None = None) -> dict:
    """Append one run's metrics, settings and timing to the registry and return the entry."""
    entry = {
        "time": datetime.now().isoformat(timespec="seconds"),
        "notebook": notebook,
        "model": model,
        "profile": config.profile().name,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "metrics": {k: float(v) for k, v in metrics.items()},
        "settings": settings or {},
        "timing": timing or {},
        "run_dir": str(run_dir) if run_dir else None,
    }
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(entry, default=str) + "\n")
    return entry


def entries(profile: str | None = None) -> list[dict]:
    """Every registry entry as recorded (nested ``metrics``, ``settings``, ``timing``), oldest first; only
    ``profile``'s when given."""
    path = registry_path()
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if profile is None or row["profile"] == profile]


def load(profile: str | None = None) -> pd.DataFrame:
    """All registry entries as a flat table (metrics and timing as columns), newest last."""
    rows = entries()
    if not rows:
        return pd.DataFrame()
    table = pd.json_normalize(rows)
    return table if profile is None else table[table["profile"] == profile]


def latest(notebooks: list[str], metrics: list[str], timing: list[str] = (),
           profile: str | None = None) -> pd.DataFrame:
    """The newest registry entry of each of ``notebooks`` (this profile by default): model, the given metrics
    and timing columns, and when it was recorded."""
    table = load(profile or config.profile().name)
    if table.empty:
        return table
    rows = table[table["notebook"].isin(notebooks)].groupby("notebook").tail(1).set_index("notebook")
    columns = {"model": rows["model"], "recorded": rows["time"]}
    columns.update({name: rows.get(f"metrics.{name}") for name in metrics})
    columns.update({name: rows.get(f"timing.{name}") for name in timing})
    return pd.DataFrame({k: v for k, v in columns.items() if v is not None}).reindex(
        [n for n in notebooks if n in rows.index])
