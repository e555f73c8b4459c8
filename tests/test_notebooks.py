"""Every notebook runs top to bottom on the demo twin, and what it learned is checked in the results registry."""
from pathlib import Path

import pytest

from helpers import config, nbrun, results

NOTEBOOKS = sorted((config.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# notebook -> {registry metric: minimum on the demo twin}; chance levels in the comments.
EXPECTED = {
    "03_convnext_from_scratch": {"dev_acc": 5 / 24},  # 24 identities: chance 1/24
    "04_resnet50": {"val_acc": 3 / 24},
    "05_mobilenetv2": {"val_acc": 3 / 24},
    "06_inception_resnet_v1": {"val_acc": 3 / 24},
}


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path, tmp_path: Path):
    nbrun.execute(path, tmp_path, timeout=600)
    assert (tmp_path / path.name).is_file()
    if path.stem in EXPECTED:
        table = results.load()
        entries = table[table.notebook == path.stem]
        assert len(entries), f"{path.stem} recorded no result in the registry"
        latest = entries.groupby("model").tail(1)
        for metric, minimum in EXPECTED[path.stem].items():
            values = latest[f"metrics.{metric}"]
            assert (values >= minimum).all(), f"{path.stem}: {metric} {values.tolist()} below {minimum:.3f}"
