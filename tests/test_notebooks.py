"""Every notebook runs top to bottom on the demo twin, and what it reports is checked."""
import json
from pathlib import Path

import pytest

from helpers import config, nbrun

NOTEBOOKS = sorted((config.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path, tmp_path: Path):
    nb = nbrun.execute(path, tmp_path, timeout=600)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert (tmp_path / path.name).is_file()
