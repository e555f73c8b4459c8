"""Hyper-parameter search with Optuna: a resumable study pruned by Hyperband, its table and its plots.

Hyperband (Li et al. 2018, arXiv:1603.06560) runs brackets of successive halving: many configurations get a
few epochs, the best third (``reduction_factor`` 3) of each rung goes on, up to ``max_resource`` epochs. Its
configurations are drawn at random (``sampler="random"``, as the original and Keras Tuner do); ``"tpe"`` lets
Optuna's TPE propose them from the trials so far instead.

The study lives in ``<folder>/study.db`` (SQLite): rerunning the same cell, or a notebook resumed with ``RESUME``,
continues it until ``trials`` trials have finished. A trial left running by a lost session stops sending its
heartbeat and is marked failed on the next run; finished trials are never repeated (the sampler is reseeded
with the number of trials already stored, so a resumed study draws new configurations).

A search space is data: ``{"lr": ("log", 1e-5, 3e-3), "dropout": ("float", 0.0, 0.6), "head_units":
("choice", (256, 512, 1024)), "layers": ("int", 1, 3)}``.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, Trial, TrialState
from optuna.visualization import matplotlib as optuna_plots

SAMPLERS = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT_S, GRACE_S = 60, 180  # a running trial's heartbeat; silence after which it counts as lost


def suggest(trial: Trial, space: Mapping[str, tuple]) -> dict:
    """One value per entry of ``space``: ``("log", low, high)``, ``("float", low, high)``, ``("int", low,
    high)`` or ``("choice", options)``."""
    values = {}
    for name, (kind, *args) in space.items():
        if kind in ("log", "float"):
            values[name] = trial.suggest_float(name, *args, log=kind == "log")
        elif kind == "int":
            values[name] = trial.suggest_int(name, *args)
        elif kind == "choice":
            values[name] = trial.suggest_categorical(name, list(args[0]))
        else:
            raise ValueError(f"search space {name!r}: kind {kind!r}; use 'log', 'float', 'int' or 'choice'.")
    return values


def reporter(trial: Trial, monitor: str) -> Callable[[dict], None]:
    """An ``engine.fit(on_epoch=...)`` callback: reports each epoch's ``monitor`` to the pruner and stops the
    trial (``optuna.TrialPruned``) when Hyperband says so."""
    def report(row: dict) -> None:
        trial.report(float(row[monitor]), int(row["epoch"]))
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {row['epoch']} ({monitor} {row[monitor]:.3f})")
    return report


def open_study(folder: str | Path, name: str, max_resource: int, reduction_factor: int = 3,
               sampler: str = "random", seed: int = 0, direction: str = "maximize") -> optuna.Study:
    """The study ``name`` in ``folder/study.db``, created or loaded, with a Hyperband pruner over 1 to
    ``max_resource`` epochs."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r}; choose one of {sorted(SAMPLERS)}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # the heartbeat is flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'study.db'}", heartbeat_interval=HEARTBEAT_S,
                                             grace_period=GRACE_S)
    try:
        stored = len(storage.get_all_trials(storage.get_study_id_from_name(name)))
    except KeyError:  # a new study
        stored = 0
    pruner = optuna.pruners.HyperbandPruner(1, max_resource, reduction_factor)
    return optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True,
                               sampler=SAMPLERS[sampler](seed=seed + stored), pruner=pruner)


def finished(study: optuna.Study) -> int:
    """Trials that completed or were pruned (failed ones do not count)."""
    return sum(t.state in FINISHED for t in study.trials)


def optimize(study: optuna.Study, objective: Callable[[Trial], float], trials: int) -> optuna.Study:
    """Run ``objective`` until ``trials`` trials have finished in ``study`` (none when it already has them)."""
    remaining = max(0, trials - finished(study))
    if remaining:
        study.optimize(objective, n_trials=remaining)
    return study


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best completed trial, or None before any has completed."""
    try:
        return study.best_trial
    except ValueError:
        return None


def summary(study: optuna.Study) -> dict[str, float]:
    """The study in two figures for a results registry: finished trials and the best value."""
    best = best_trial(study)
    return {"search_trials": finished(study), **({"search_best_value": best.value} if best else {})}


def table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: state, value, parameters, epochs reached and seconds, the best one marked."""
    best = best_trial(study)
    rows = [{"trial": t.number, "state": t.state.name.lower(), "value": t.value, **t.params,
             "epochs": len(t.intermediate_values),
             "seconds": round(t.duration.total_seconds(), 1) if t.duration else None,
             "best": best is not None and t.number == best.number} for t in study.trials]
    return pd.DataFrame(rows).set_index("trial") if rows else pd.DataFrame()


def plots(study: optuna.Study) -> dict[str, Figure]:
    """Optuna's matplotlib figures (no plotly needed): the best value over trials, every trial's curve over
    epochs (pruned ones stop early) and the value against each parameter. Closed in pyplot, like
    ``helpers.plots``: display the ones you want."""
    draw = {"history": optuna_plots.plot_optimization_history,
            "intermediate values": optuna_plots.plot_intermediate_values, "slice": optuna_plots.plot_slice}
    figures = {}
    with warnings.catch_warnings(), plt.style.context("default"):  # Optuna switches pyplot to ggplot: not beyond here
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, plot in draw.items():
            figure = np.ravel(plot(study))[0].figure
            plt.close(figure)
            figures[name] = figure
    return figures
