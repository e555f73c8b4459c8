"""The setup cell every notebook runs right after its parameters, identical in all of them.

It makes ``helpers`` importable: nothing to do in a checkout (``make setup`` installed it); on Colab or Kaggle
it clones ``REPO_URL`` once and installs ``requirements-hosted.txt``, which leaves the runtime's torch,
torchvision and Jupyter alone. A placeholder URL stops it with what to set. Then ``config.start`` applies
``DRIVE`` (Colab) and shows where data, runs and submissions go. ``REPO_URL`` has one home, ``pyproject.toml``'s
``[project.urls] Repository``; ``python -m helpers.setup_cell [--url URL]`` writes it into every notebook.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from helpers.config import REPO_ROOT

PLACEHOLDER = "YOUR-ACCOUNT"
URL_LINE = re.compile(r'^(Repository = ")([^"]*)(")', re.MULTILINE)
TAG = "setup"
TEMPLATE = '''# Setup: `helpers` is installed in a checkout (make setup); on Colab or Kaggle this installs it once from
# REPO_URL (your copy of this repository) with the slim hosted requirements, keeping the runtime's torch.
REPO_URL = "{url}"
import importlib.util, os, subprocess, sys
if importlib.util.find_spec("helpers") is None and not os.path.isdir("../helpers"):
    if "{placeholder}" in REPO_URL:
        raise RuntimeError("helpers is not installed. Push this repository to GitHub and set REPO_URL in this "
                           "cell to its URL (https://github.com/<you>/<repo>.git), then run the cell again.")
    home = "/kaggle/working/faces" if "KAGGLE_KERNEL_RUN_TYPE" in os.environ else "/content/faces"
    if not os.path.isdir(home):
        subprocess.run(["git", "clone", "-q", "--depth", "1", REPO_URL, home], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", f"{{home}}/requirements-hosted.txt"],
                   check=True)
    sys.path.insert(0, home)
elif importlib.util.find_spec("helpers") is None:
    sys.path.insert(0, os.path.abspath(".."))
from helpers import config
config.start(drive=DRIVE)'''


def repo_url(pyproject: Path = REPO_ROOT / "pyproject.toml") -> str:
    """The repository URL of ``pyproject.toml`` (``[project.urls] Repository``)."""
    return URL_LINE.search(pyproject.read_text()).group(2)


def source(url: str | None = None) -> str:
    """The setup cell's code for ``url`` (default: :func:`repo_url`)."""
    return TEMPLATE.format(url=url or repo_url(), placeholder=PLACEHOLDER)


def setup_cell(notebook: dict) -> dict:
    """The cell tagged ``setup`` of a notebook's JSON; a ``ValueError`` if there is not exactly one."""
    cells = [c for c in notebook["cells"] if TAG in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"expected one cell tagged {TAG!r}, found {len(cells)}")
    return cells[0]


def sync(folder: Path = REPO_ROOT / "notebooks", url: str | None = None) -> list[Path]:
    """Write the setup cell (and, with ``url``, the URL into pyproject.toml) into every notebook of
    ``folder``; returns the notebooks that changed."""
    if url:
        pyproject = REPO_ROOT / "pyproject.toml"
        text = URL_LINE.sub(rf"\g<1>{url}\g<3>", pyproject.read_text())
        pyproject.write_text(text)
    code, changed = source(url), []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        notebook = json.loads(path.read_text())
        cell = setup_cell(notebook)
        if "".join(cell["source"]) != code:
            cell["source"] = code.splitlines(keepends=True)
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="your repository's URL, written to pyproject.toml and every notebook")
    changed = sync(url=parser.parse_args(argv).url)
    print("\n".join(f"updated {p}" for p in changed) or "every notebook's setup cell is up to date")


if __name__ == "__main__":
    main()
