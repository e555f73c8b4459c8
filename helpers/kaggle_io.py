"""Download, unzip and submit through the ``kaggle`` command-line tool.

The ``kaggle`` package authenticates when it is imported and exits without credentials, so it is never
imported here: the CLI runs in a subprocess. Competition downloads arrive as zips without ``--unzip``;
:func:`safe_unzip` extracts them and refuses entries that would land outside the target folder.
A download is built in a hidden ``.partial-<slug>-*`` folder beside its destination (readers skip hidden
folders), gets a ``MARKER`` file once complete and is then renamed into place, so an interrupted run never
leaves a partial tree where a later run would accept it.
"""

from __future__ import annotations

import codecs
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm.auto import tqdm

from helpers import config
from helpers.datasets import constants

HOW_TO_AUTHENTICATE = """No Kaggle credentials found. Give the kaggle CLI one of these:
  1. kaggle.json: on https://www.kaggle.com your Account page (Settings) > API > Create New Token downloads
     kaggle.json; put it at ~/.kaggle/kaggle.json (or in the folder named by KAGGLE_CONFIG_DIR) and run
     `chmod 600 ~/.kaggle/kaggle.json`.
  2. Environment variables KAGGLE_USERNAME and KAGGLE_KEY (the two values inside kaggle.json),
     e.g. Colab secrets or Kaggle notebook secrets.
  3. Environment variable KAGGLE_API_TOKEN holding an API token from https://www.kaggle.com/settings/api.
Without credentials you can still run every notebook offline on the synthetic twin: set FACES_PROFILE=demo."""

ACCESS_HINT = """Hints:
  403 Forbidden: for a competition you must accept its rules first: open
     https://www.kaggle.com/competitions/{slug}/rules while logged in and click "I Understand and Accept";
     for a dataset, the slug is wrong or the dataset is private.
  401 Unauthorized: the credentials are wrong or expired; create a new token on your Kaggle Account page.
  404 Not Found: check the slug ({slug})."""


class MissingCredentialsError(RuntimeError):
    """No Kaggle credentials were found."""


class UnsafeArchiveError(ValueError):
    """A zip entry would be written outside the extraction folder."""


class KaggleCLIError(RuntimeError):
    """The kaggle CLI returned a non-zero exit status."""


class IncompleteDownloadError(RuntimeError):
    """A download destination holds files but no completion marker (an interrupted download)."""


MARKER = ".faces-download.json"  # written into a download folder once it is complete


@dataclass(frozen=True)
class CredentialStatus:
    """Which credential sources are present (descriptions only, never values)."""

    sources: tuple[str, ...]

    @property
    def found(self) -> bool:
        return bool(self.sources)

    def __str__(self) -> str:
        return "Kaggle credentials: " + ("; ".join(self.sources) if self.found else "none found")


@dataclass(frozen=True)
class Source:
    """Where one part of a dataset comes from: a Kaggle ``competition``/``dataset`` slug, or ``manual``."""

    kind: str
    slug: str | None = None
    subdir: str = ""  # folder below the dataset root that receives the files
    note: str = ""


_CELEBA_NOTE = (
    "The Kaggle mirror has img_align_celeba/img_align_celeba/ and the CSV attribute/partition files but no "
    "identity_CelebA.txt; for identity labels add that file from the official CelebA page "
    "(https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html) next to the CSVs."
)
_UTKFACE_NOTE = (
    "The archive holds the same faces several times (UTKFace/, crop_part1/, utkface_aligned_cropped/); "
    "the reader reads only UTKFace/ and reports the files of the other folders as ignored."
)
_ADIENCE_NOTE = (
    "Files arrive inside a wrapper folder (AdienceBenchmarkGenderAndAgeClassification/); "
    "the reader finds fold_*_data.txt and faces/ below it."
)
_FAIRFACE_NOTE = (
    "FairFace has no official Kaggle copy. From https://github.com/joojs/fairface download the images "
    "(Padding=0.25 zip) and the label files fairface_label_train.csv and fairface_label_val.csv, then "
    "unzip so that {root}/train/*.jpg, {root}/val/*.jpg and {root}/fairface_label_{{train,val}}.csv exist."
)
_FACECOM_NOTE = (
    "FACECOM comes from the COMSYS Hackathon-5 (its organisers share the dataset link on registration). "
    "Unzip it so that {root}/Task_A/{{train,val}}/{{male,female}}/ and "
    "{root}/Task_B/{{train,val}}/<identity>/ exist."
)

SOURCES: dict[str, tuple[Source, ...]] = {
    "hw2p2": (
        Source("competition", constants.HW2P2_CLS, subdir=constants.HW2P2_CLS),
        Source("competition", constants.HW2P2_VER, subdir=constants.HW2P2_VER),
    ),
    "cs405": (Source("competition", constants.CS405_SLUG),),
    "celeba": (Source("dataset", constants.KAGGLE_DATASETS["celeba"], note=_CELEBA_NOTE),),
    "utkface": (Source("dataset", constants.KAGGLE_DATASETS["utkface"], note=_UTKFACE_NOTE),),
    "adience": (Source("dataset", constants.KAGGLE_DATASETS["adience"], note=_ADIENCE_NOTE),),
    "fairface": (Source("manual", note=_FAIRFACE_NOTE),),
    "facecom": (Source("manual", note=_FACECOM_NOTE),),
}

_SECRET_PATTERNS = (re.compile(r"\b[0-9a-f]{32}\b"), re.compile(r"\bKGAT_[0-9A-Za-z_-]+"))


def _config_dirs() -> list[Path]:
    if env := os.environ.get("KAGGLE_CONFIG_DIR"):
        return [Path(env).expanduser()]
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [Path.home() / ".kaggle", xdg / "kaggle"]


def _warn_permissions(path: Path) -> None:
    if os.name == "posix" and path.stat().st_mode & 0o077:
        warnings.warn(f"{path} is readable by other users; run `chmod 600 {path}`.", stacklevel=3)


def credentials_status() -> CredentialStatus:
    """Which Kaggle credential sources are present; warns when kaggle.json is not ``chmod 600``."""
    sources = []
    for folder in _config_dirs():
        path = folder / "kaggle.json"
        if path.is_file() and path.stat().st_size > 0:
            via = "KAGGLE_CONFIG_DIR" if os.environ.get("KAGGLE_CONFIG_DIR") else "config folder"
            sources.append(f"kaggle.json at {path} ({via})")
            _warn_permissions(path)
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        sources.append("KAGGLE_USERNAME + KAGGLE_KEY environment variables")
    if os.environ.get("KAGGLE_API_TOKEN"):
        sources.append("KAGGLE_API_TOKEN environment variable")
    token_file = Path.home() / ".kaggle" / "access_token"
    if token_file.is_file() and token_file.stat().st_size > 0:
        sources.append(f"API token file {token_file}")
    return CredentialStatus(tuple(sources))


def require_credentials() -> CredentialStatus:
    """The credential status, or :class:`MissingCredentialsError` explaining the ways to provide them."""
    status = credentials_status()
    if not status.found:
        raise MissingCredentialsError(HOW_TO_AUTHENTICATE)
    return status


def _secrets() -> list[str]:
    values = [os.environ.get(name, "") for name in ("KAGGLE_KEY", "KAGGLE_API_TOKEN")]
    for folder in _config_dirs():
        try:
            values.append(str(json.loads((folder / "kaggle.json").read_text()).get("key", "")))
        except (OSError, ValueError, AttributeError):
            continue
    return [v for v in values if len(v) >= 8]


def scrub(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with credential values and anything shaped like a Kaggle key replaced by ``***``."""
    for secret in _secrets() if secrets is None else secrets:
        text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("***", text)
    return text


def _cli() -> list[str]:
    if exe := shutil.which("kaggle"):
        return [exe]
    if importlib.util.find_spec("kaggle") is not None:
        return [sys.executable, "-m", "kaggle"]
    raise FileNotFoundError("The kaggle CLI is not installed: run `pip install kaggle`.")


def run_cli(args: list[str], slug: str) -> str:
    """Run ``kaggle ARGS``, echoing its (scrubbed) output as it comes; :class:`KaggleCLIError` on failure."""
    proc = subprocess.Popen([*_cli(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    secrets, decoder, chunks = _secrets(), codecs.getincrementaldecoder("utf-8")(errors="replace"), []
    while chunk := proc.stdout.read1(4096):
        text = scrub(decoder.decode(chunk), secrets)
        chunks.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()
    output = "".join(chunks)
    if proc.wait() != 0:
        raise KaggleCLIError(
            f"`kaggle {' '.join(args[:2])} {slug}` failed with exit status {proc.returncode}:\n"
            f"{output[-4000:].strip()}\n{ACCESS_HINT.format(slug=slug)}"
        )
    return output


def _is_unsafe(name: str) -> bool:
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    return (
        posix.is_absolute()
        or windows.is_absolute()
        or bool(windows.drive)
        or name.startswith(("/", "\\"))
        or ".." in posix.parts
        or ".." in windows.parts
    )


def safe_unzip(zip_path: Path, dest: Path) -> Path:
    """Extract ``zip_path`` into ``dest`` after checking every entry stays inside ``dest``."""
    zip_path, dest = Path(zip_path), Path(dest)
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.infolist()
        root = dest.resolve()
        for member in members:
            target = (root / member.filename).resolve()
            if _is_unsafe(member.filename) or not target.is_relative_to(root):
                raise UnsafeArchiveError(
                    f"{zip_path}: entry {member.filename!r} would be written outside {dest}; "
                    "nothing was extracted. Check where the archive came from."
                )
        dest.mkdir(parents=True, exist_ok=True)
        for member in tqdm(members, desc=f"unzip {zip_path.name}", unit="file"):
            archive.extract(member, dest)
    return dest


def _has_content(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def is_complete(folder: str | Path) -> bool:
    """True when ``folder`` is a finished download (it holds the ``MARKER`` written by :func:`download`)."""
    return (Path(folder) / MARKER).is_file()


def _fetch_into(tree: Path, slug: str, kind: str) -> int:
    """Download ``slug`` with the CLI beside ``tree`` and unzip it into ``tree``; returns the file count."""
    zips = tree.parent / "zips"
    zips.mkdir()
    flag = ["competitions", "download", "-c"] if kind == "competition" else ["datasets", "download", "-d"]
    run_cli([*flag, slug, "-p", str(zips)], slug)
    tree.mkdir()
    for path in sorted(zips.iterdir()):
        if path.suffix == ".zip":
            safe_unzip(path, tree)
            path.unlink()
        else:
            shutil.move(str(path), tree / path.name)
    return sum(len(files) for _, _, files in os.walk(tree))


def _move_into_place(tree: Path, dest: Path, old: Path) -> None:
    """Rename the finished ``tree`` to ``dest``; an existing ``dest`` is first renamed to ``old`` (hidden)."""
    if dest.exists():
        os.replace(dest, old)
    os.replace(tree, dest)


def download(slug: str, dest: Path, kind: str = "competition", force: bool = False) -> Path:
    """Download a Kaggle competition or dataset and unzip it into ``dest``; skipped when ``dest`` is complete.

    The files are fetched and extracted in a hidden ``.partial-<slug>-*`` folder beside ``dest``, marked
    complete, then renamed to ``dest`` (``force=True`` replaces an existing ``dest`` only at that point). A
    non-empty ``dest`` without the marker raises :class:`IncompleteDownloadError`.
    """
    dest = Path(dest)
    if kind not in ("competition", "dataset"):
        raise ValueError(f"kind={kind!r}; use 'competition' or 'dataset'.")
    if is_complete(dest) and not force:
        print(f"{dest} is complete; skipping the download of {slug} (force=True downloads again).")
        return dest
    if _has_content(dest) and not force:
        raise IncompleteDownloadError(
            f"{dest} has files but no {MARKER}: it looks like an interrupted download of {slug}. Delete the "
            f"folder and run again, or pass force=True to download again (the folder is replaced only once the "
            f"new download is complete). If you put complete data there yourself, skip the download.")
    require_credentials()
    dest.parent.mkdir(parents=True, exist_ok=True)
    safe_slug = re.sub(r"[^\w.-]", "-", slug)
    partial = Path(tempfile.mkdtemp(prefix=f".partial-{safe_slug}-", dir=dest.parent))
    try:
        tree = partial / "tree"
        count = _fetch_into(tree, slug, kind)
        utc = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        (tree / MARKER).write_text(json.dumps({"slug": slug, "kind": kind, "utc": utc, "files": count}) + "\n")
        _move_into_place(tree, dest, partial / "old")
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dest


def submit(csv_path: Path, slug: str, message: str) -> str:
    """Submit ``csv_path`` to competition ``slug``; returns the CLI's output."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"Submission file {csv_path} does not exist: write it first (helpers.submission)."
        )
    require_credentials()
    return run_cli(["competitions", "submit", slug, "-f", str(csv_path), "-m", message], slug)


def fetch(name: str, root: Path | None = None) -> Path:
    """Download dataset ``name`` into ``root / DATASET_DIRS[name]`` (``root``: ``config.data_root()``).

    Datasets without a Kaggle source raise :class:`FileNotFoundError` with the manual instructions, unless
    their folder already has files. Returns the dataset folder.
    """
    if name not in SOURCES:
        raise KeyError(f"Unknown dataset {name!r}; known: {sorted(SOURCES)}.")
    folder = Path(root or config.data_root()) / constants.DATASET_DIRS[name]
    for source in SOURCES[name]:
        if source.kind == "manual":
            if not _has_content(folder):
                raise FileNotFoundError(f"{name}: {source.note.format(root=folder)}")
            print(f"{folder} already has files; nothing to fetch for {name}.")
            continue
        download(source.slug, folder / source.subdir, kind=source.kind)
        if source.note:
            print(f"Note for {name}: {source.note}")
    return folder
