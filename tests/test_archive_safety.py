"""Archives are read with path checks, and a source the user names is used or refused.

``fusionrank data fetch --source`` never extracts an archive to disk: it reads the few
GroupLens files in memory after checking every member (no absolute path, no ``..`` out of
the folder, no link out of it), and an archive with one unsafe member is refused whole.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from fusionrank.data import fetch as fetch_mod
from fusionrank.data.dataset import load_dataset
from fusionrank.data.fetch import FetchError, UnsafeArchiveError, check_member, fetch_ml100k, read_archive

GROUPLENS = {
    "ml-100k/u.data": b"1\t10\t4\t100\n2\t10\t3\t101\n",
    "ml-100k/u.item": b"10|Heat (1995)|01-Jan-1995||http://x|" + b"|".join([b"0"] * 19) + b"\n",
    "ml-100k/u.user": b"1|24|M|technician|85711\n2|53|F|other|94043\n",
}


@pytest.mark.parametrize(
    "name, link, hard",
    [
        ("ml-100k/u.data", None, False),
        ("./ml-100k/u.data", None, False),
        ("a/../u.data", None, False),
        ("ml-100k/link", "../u.data", False),  # stays in the archive's folder
        ("ml-100k/hard", "ml-100k/u.data", True),
    ],
)
def test_safe_members_pass(name, link, hard):
    assert check_member(name, link, hard=hard)


@pytest.mark.parametrize(
    "name, link, hard",
    [
        ("../u.data", None, False),
        ("a/../../u.data", None, False),
        ("..\\u.data", None, False),
        ("/etc/passwd", None, False),
        ("C:/Windows/u.data", None, False),
        ("ml-100k/link", "../../etc/passwd", False),
        ("ml-100k/link", "/etc/passwd", False),
        ("ml-100k/hard", "../u.data", True),
    ],
)
def test_unsafe_members_are_refused(name, link, hard):
    with pytest.raises(UnsafeArchiveError):
        check_member(name, link, hard=hard)


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    return path


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, payload in files.items():
            z.writestr(name, payload)
    return path


@pytest.fixture
def no_fallback(monkeypatch):
    """The web and the package index must not be touched when a source is named."""

    def boom(*args, **kwargs):
        raise AssertionError("fell back to another source")

    monkeypatch.setattr(fetch_mod, "_from_grouplens_url", boom)
    monkeypatch.setattr(fetch_mod, "_from_recbole_wheel", boom)


@pytest.mark.parametrize("make, suffix", [(_zip, "zip"), (_tar, "tar.gz")])
def test_a_safe_archive_is_read(tmp_path, no_fallback, make, suffix):
    source = make(tmp_path / f"ml-100k.{suffix}", GROUPLENS)
    fetch_ml100k(tmp_path / "data", source, log=lambda m: None)
    assert len(load_dataset("ml-100k", tmp_path / "data").interactions) == 2


@pytest.mark.parametrize(
    "extra, says",
    [
        ({"../u.genre": b"x"}, "outside"),
        ({"/tmp/u.genre": b"x"}, "outside"),
        ({"other/u.data": b"1\t11\t4\t1\n"}, "more than one u.data"),
    ],
)
def test_a_bad_archive_is_refused_and_nothing_is_written(tmp_path, no_fallback, extra, says):
    source = _zip(tmp_path / "ml-100k.zip", {**GROUPLENS, **extra})
    root = tmp_path / "data"
    with pytest.raises(FetchError, match=says) as err:
        fetch_ml100k(root, source, log=lambda m: None)
    assert "\n" not in str(err.value) and str(source) in str(err.value)
    assert list(root.iterdir()) == []  # no dataset, no staging folder


def test_an_archive_missing_a_file_is_refused(tmp_path, no_fallback):
    files = {k: v for k, v in GROUPLENS.items() if not k.endswith("u.user")}
    with pytest.raises(FetchError, match="no u.user in the archive"):
        read_archive(_tar(tmp_path / "x.tgz", files), ("u.data", "u.user"))


def test_a_named_source_that_cannot_be_used_is_never_replaced(tmp_path, no_fallback):
    (tmp_path / "notes.txt").write_text("not a dataset")
    (tmp_path / "empty").mkdir()
    for source in (tmp_path / "notes.txt", tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(FetchError, match=f"cannot use --source {source}"):
            fetch_ml100k(tmp_path / "data", source, log=lambda m: None)
    assert not (tmp_path / "data" / "ml-100k").exists()
