"""Every notebook runs top to bottom on the demo twin, and what it learned is checked in the results registry."""
import operator
from pathlib import Path

import pytest

from helpers import config, nbrun, results

NOTEBOOKS = sorted((config.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# notebook -> checks (metric, ">=" or "<=", reference metric recorded by the notebook or None, offset):
# metric OP reference + offset. The demo twin has 24 identities (chance 1/24).
CHECKS = {
    "03_convnext_from_scratch": [("val_acc", ">=", "chance", 5 / 24)],
    "04_resnet50": [("val_acc", ">=", "chance", 2 / 24)],
    "05_mobilenetv2": [("val_acc", ">=", "chance", 2 / 24)],
    "06_inception_resnet_v1": [("val_acc", ">=", "chance", 2 / 24)],
    "07_arcface_verification": [("rank1_known", ">=", None, 0.25), ("pairs_auc", ">=", None, 0.65)],
    "08_multitask_fairface": [("gender_acc", ">=", "chance_gender_acc", 0.1),
                              ("race_acc", ">=", "chance_race_acc", 0.1),
                              ("age_one_off", ">=", "chance_age_one_off", 0.15),
                              ("age_mae", "<=", "chance_age_mae", -5.0)],
    "09_dualhead_facecom": [("task_a_f1", ">=", "task_a_chance_f1", 0.15),
                            ("task_b_top1", ">=", "task_b_chance_top1", 0.2),
                            ("task_b_seen_top1", ">=", "task_b_seen_untrained_top1", 0.1)],
    "10_adience_transfer": [("gender_acc", ">=", "chance_gender_acc", 0.15),
                            ("gender_acc", ">=", "majority_gender_acc", 0.05),
                            ("multitask_gender_acc", ">=", "chance_gender_acc", 0.15)],
}
OPS = {">=": operator.ge, "<=": operator.le}


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path, tmp_path: Path):
    nbrun.execute(path, tmp_path, timeout=600)
    assert (tmp_path / path.name).is_file()
    if path.stem not in CHECKS:
        return
    table = results.load()
    entries = table[table.notebook == path.stem]
    assert len(entries), f"{path.stem} recorded no result in the registry"
    for _, entry in entries.groupby("model").tail(1).iterrows():
        for metric, op, reference, offset in CHECKS[path.stem]:
            value = entry[f"metrics.{metric}"]
            bound = (entry[f"metrics.{reference}"] if reference else 0.0) + offset
            assert OPS[op](value, bound), f"{path.stem} {entry.model}: {metric} {value:.3f} not {op} {bound:.3f}"
