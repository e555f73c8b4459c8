"""kaggle_io: zip guard, credential checks and downloads through a fake ``kaggle`` executable (no network)."""

import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import kaggle_io

FAKE_KEY = "0123456789abcdef0123456789abcdef"
FAKE_TOKEN = "KGAT_fake_token_value_123456"

FAKE_CLI = f"""#!{sys.executable}
import json, os, sys, zipfile
from pathlib import Path
args = sys.argv[1:]
Path(os.environ["FAKE_KAGGLE_LOG"]).open("a").write(json.dumps(args) + "\\n")
if os.environ.get("FAKE_KAGGLE_FAIL"):
    sys.stderr.write("403 Client Error: Forbidden for key " + os.environ.get("KAGGLE_KEY", "") + "\\n")
    sys.exit(1)
if "download" in args:
    out = Path(args[args.index("-p") + 1])
    with zipfile.ZipFile(out / "archive.zip", "w") as z:
        z.writestr("dataset/train/n000001/a.jpg", b"jpeg bytes")
        z.writestr("sample_submission.csv", "image_name,label\\n")
print("done")
"""


@pytest.fixture
def home(monkeypatch, tmp_path):
    """A fresh HOME with no Kaggle variables set."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("KAGGLE_CONFIG_DIR", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def fake_cli(monkeypatch, tmp_path, home):
    """A fake ``kaggle`` first on PATH that logs its arguments; credentials in the environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "kaggle"
    script.write_text(FAKE_CLI)
    script.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KAGGLE_LOG", str(log))
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", FAKE_KEY)
    return lambda: [json.loads(line) for line in log.read_text().splitlines()]


def make_zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(zipfile.ZipInfo(name), b"data")
    return path


@pytest.mark.parametrize(
    "bad",
    [
        "/etc/evil.txt",
        "../evil.txt",
        "a/../../evil.txt",
        "C:/evil.txt",
        "C:\\evil.txt",
        "a\\..\\..\\evil.txt",
    ],
)
def test_safe_unzip_refuses_escaping_entries(tmp_path, bad):
    archive = make_zip(tmp_path / "bad.zip", ["ok/first.txt", bad])
    dest = tmp_path / "out"
    with pytest.raises(kaggle_io.UnsafeArchiveError, match="would be written outside") as err:
        kaggle_io.safe_unzip(archive, dest)
    assert repr(bad)[1:-1] in str(err.value) or bad in str(err.value)
    assert not dest.exists(), "nothing may be extracted when one entry is unsafe"


def test_safe_unzip_extracts_normal_archive(tmp_path):
    archive = make_zip(tmp_path / "good.zip", ["top.csv", "dataset/train/n1/a.jpg", "dataset/test/"])
    dest = kaggle_io.safe_unzip(archive, tmp_path / "out")
    assert (dest / "top.csv").read_bytes() == b"data"
    assert (dest / "dataset/train/n1/a.jpg").is_file()
    assert (dest / "dataset/test").is_dir()


def test_missing_credentials_message_lists_every_way(home, monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", FAKE_KEY)  # a key without a user name is not a credential
    assert not kaggle_io.credentials_status().found
    with pytest.raises(kaggle_io.MissingCredentialsError) as err:
        kaggle_io.require_credentials()
    message = str(err.value)
    for needle in (
        "~/.kaggle/kaggle.json",
        "chmod 600",
        "Create New Token",
        "KAGGLE_USERNAME",
        "KAGGLE_KEY",
        "KAGGLE_API_TOKEN",
        "FACES_PROFILE=demo",
    ):
        assert needle in message
    assert FAKE_KEY not in message


def test_credentials_status_names_sources_without_values(home, monkeypatch, capsys, recwarn):
    folder = home / ".kaggle"
    folder.mkdir()
    config = folder / "kaggle.json"
    config.write_text(json.dumps({"username": "someone", "key": FAKE_KEY}))
    config.chmod(0o600)
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", FAKE_KEY)
    monkeypatch.setenv("KAGGLE_API_TOKEN", FAKE_TOKEN)
    status = kaggle_io.credentials_status()
    assert len(status.sources) == 3
    assert kaggle_io.require_credentials() == status
    shown = (
        str(status) + repr(status) + "".join(capsys.readouterr()) + "".join(str(w.message) for w in recwarn)
    )
    assert "kaggle.json" in shown and "KAGGLE_API_TOKEN" in shown
    assert FAKE_KEY not in shown and FAKE_TOKEN not in shown
    assert not recwarn, "a chmod 600 file must not warn"


def test_config_dir_and_permission_warning(home, monkeypatch, tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "kaggle.json").write_text(json.dumps({"username": "someone", "key": FAKE_KEY}))
    (folder / "kaggle.json").chmod(0o644)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(folder))
    with pytest.warns(UserWarning, match="chmod 600"):
        status = kaggle_io.credentials_status()
    assert status.found and "KAGGLE_CONFIG_DIR" in str(status)


def test_scrub_hides_keys(home, monkeypatch):
    monkeypatch.setenv("KAGGLE_API_TOKEN", FAKE_TOKEN)
    text = kaggle_io.scrub(f"token {FAKE_TOKEN} key {FAKE_KEY} file a.jpg")
    assert FAKE_TOKEN not in text and FAKE_KEY not in text and "a.jpg" in text


def test_download_skips_a_complete_folder(home, tmp_path, capsys):
    dest = tmp_path / "cs405"
    dest.mkdir()
    (dest / "already.txt").write_text("x")
    (dest / kaggle_io.MARKER).write_text("{}")
    assert kaggle_io.is_complete(dest)
    assert kaggle_io.download("some-competition", dest) == dest  # no credentials: would raise if it tried
    assert "skipping" in capsys.readouterr().out


def test_download_refuses_a_folder_without_marker(home, tmp_path):
    dest = tmp_path / "cs405"
    dest.mkdir()
    (dest / "already.txt").write_text("x")
    assert not kaggle_io.is_complete(dest)
    with pytest.raises(kaggle_io.IncompleteDownloadError) as err:
        kaggle_io.download("some-competition", dest)
    message = str(err.value)
    assert isinstance(err.value, RuntimeError)
    assert str(dest) in message and "interrupted download" in message and "force=True" in message
    assert (dest / "already.txt").read_text() == "x"


def test_download_requires_credentials(home, tmp_path):
    with pytest.raises(kaggle_io.MissingCredentialsError):
        kaggle_io.download("some-competition", tmp_path / "empty")


@pytest.mark.parametrize(
    "kind, flag",
    [("competition", ["competitions", "download", "-c"]), ("dataset", ["datasets", "download", "-d"])],
)
def test_download_runs_cli_and_unzips(fake_cli, tmp_path, kind, flag):
    dest = tmp_path / "data" / "cs405"
    assert kaggle_io.download("owner/slug", dest, kind=kind) == dest
    [args] = fake_cli()
    assert args[:4] == [*flag, "owner/slug"] and args[4] == "-p"
    assert (dest / "dataset/train/n000001/a.jpg").read_bytes() == b"jpeg bytes"
    assert (dest / "sample_submission.csv").is_file()
    assert not list(dest.rglob("*.zip")), "the zip is deleted after extraction"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["cs405"], "the temporary folder is removed"
    marker = json.loads((dest / kaggle_io.MARKER).read_text())
    assert marker["slug"] == "owner/slug" and marker["files"] == 2 and marker["utc"].endswith("Z")


def test_cli_error_shows_hint_without_secret(fake_cli, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_KAGGLE_FAIL", "1")
    with pytest.raises(kaggle_io.KaggleCLIError) as err:
        kaggle_io.download("some-competition", tmp_path / "x")
    message = str(err.value)
    assert "403" in message and "Accept" in message and "some-competition/rules" in message
    assert FAKE_KEY not in message


def test_submit(fake_cli, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        kaggle_io.submit(tmp_path / "missing.csv", "comp", "msg")
    csv = tmp_path / "submission.csv"
    csv.write_text("id,label\n")
    assert "done" in kaggle_io.submit(csv, "comp", "first try")
    assert fake_cli() == [["competitions", "submit", "comp", "-f", str(csv), "-m", "first try"]]


def test_fetch_table_and_manual_sources(fake_cli, tmp_path):
    assert set(kaggle_io.SOURCES) == set(kaggle_io.constants.DATASET_DIRS)
    folder = kaggle_io.fetch("hw2p2", tmp_path)
    assert [args[3] for args in fake_cli()] == [kaggle_io.constants.HW2P2_CLS, kaggle_io.constants.HW2P2_VER]
    assert (folder / kaggle_io.constants.HW2P2_CLS / "sample_submission.csv").is_file()
    parts = [kaggle_io.constants.HW2P2_CLS, kaggle_io.constants.HW2P2_VER]
    assert sorted(p.name for p in folder.iterdir()) == sorted(parts), "each part renamed into its own subdir"
    assert all(kaggle_io.is_complete(folder / part) for part in parts)
    with pytest.raises(FileNotFoundError, match="github.com/joojs/fairface"):
        kaggle_io.fetch("fairface", tmp_path)
    with pytest.raises(FileNotFoundError, match="Task_B"):
        kaggle_io.fetch("facecom", tmp_path)


# ---------------------------------------------------------------- interrupted and forced downloads

def _writes_zip(names: list[str], content: bytes = b"new"):
    """A stand-in for ``run_cli`` that drops a zip of ``names`` into the ``-p`` folder."""
    def run_cli(args: list[str], slug: str) -> str:
        with zipfile.ZipFile(Path(args[args.index("-p") + 1]) / "archive.zip", "w") as archive:
            for name in names:
                archive.writestr(name, content)
        return "done"
    return run_cli


def _extract_fails_at(monkeypatch, call: int) -> None:
    """Make the ``call``-th ``ZipFile.extract`` raise, as a full disk or a killed kernel would."""
    real, calls = zipfile.ZipFile.extract, []

    def extract(self, member, path=None, pwd=None):
        calls.append(member)
        if len(calls) == call:
            raise OSError(28, "No space left on device")
        return real(self, member, path, pwd)
    monkeypatch.setattr(zipfile.ZipFile, "extract", extract)


@pytest.fixture
def credentials(home, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", FAKE_KEY)


def test_interrupted_unzip_leaves_no_destination(credentials, monkeypatch, tmp_path):
    names = ["train/n1/a.jpg", "train/n1/b.jpg", "train/n2/c.jpg"]
    monkeypatch.setattr(kaggle_io, "run_cli", _writes_zip(names))
    dest = tmp_path / "data" / "cs405"
    with monkeypatch.context() as patch:
        _extract_fails_at(patch, 2)
        with pytest.raises(OSError, match="No space"):
            kaggle_io.download("comp", dest)
    assert not dest.exists(), "a partial tree must never sit at the destination"
    assert list(dest.parent.iterdir()) == [], "the temporary folder is removed after a failure"
    assert kaggle_io.download("comp", dest) == dest
    assert kaggle_io.is_complete(dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.jpg")) == names
    assert json.loads((dest / kaggle_io.MARKER).read_text())["files"] == 3


def test_force_replaces_the_folder_only_after_success(credentials, monkeypatch, tmp_path):
    dest = tmp_path / "data" / "cs405"
    monkeypatch.setattr(kaggle_io, "run_cli", _writes_zip(["old.txt"], b"old"))
    kaggle_io.download("comp", dest)

    def broken_cli(args, slug):
        raise kaggle_io.KaggleCLIError("403")
    monkeypatch.setattr(kaggle_io, "run_cli", broken_cli)
    with pytest.raises(kaggle_io.KaggleCLIError):
        kaggle_io.download("comp", dest, force=True)
    monkeypatch.setattr(kaggle_io, "run_cli", _writes_zip(["new/1.txt", "new/2.txt"]))
    with monkeypatch.context() as patch:
        _extract_fails_at(patch, 2)
        with pytest.raises(OSError):
            kaggle_io.download("comp", dest, force=True)
    assert (dest / "old.txt").read_bytes() == b"old" and kaggle_io.is_complete(dest), "old folder untouched"
    kaggle_io.download("comp", dest, force=True)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        kaggle_io.MARKER, "new/1.txt", "new/2.txt"]
    assert [p.name for p in dest.parent.iterdir()] == ["cs405"], "no temporary or old folder is left"


def test_leftover_partial_folders_are_never_read_as_data(tmp_path):
    from helpers.datasets import LayoutError, hw2p2
    from helpers.imageio import list_images

    root = tmp_path / "hw2p2"
    leftover = root / ".partial-11-785-s24-hw2p2-classification-x1y2" / "tree" / kaggle_io.constants.HW2P2_CLS
    for split in ("train/n1", "dev/n1", "test"):
        (leftover / split).mkdir(parents=True)
        (leftover / split / "a.jpg").write_bytes(b"jpeg")
    with pytest.raises(LayoutError):
        hw2p2.read_classification(root)
    assert list_images(tmp_path) == [] and not kaggle_io.is_complete(leftover)
