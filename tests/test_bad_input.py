"""Bad input through the real CLI: one clear line, exit code 2, no traceback, nothing written.

Each case is a file (or folder) of ``tests/data/bad/`` — or, for binary cases, one made here
from a valid counterpart (a truncated safetensors model, archives whose members escape,
vectors folders whose manifest disagrees with the shards) — and the command that reads
it. Every case asserts the same things: exit code 2, exactly one non-empty line on stderr
starting with ``error:``, no traceback, the message names the file (and the row/column or
key where there is one), and no file appeared in the working folder.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_atomic
from typer.testing import CliRunner

from fusionrank.data.atomic import read_atomic
from fusionrank.data.errors import DataError
from fusionrank.data.loaders import InteractionColumns, load_catalogue, load_interactions, read_file
from fusionrank.data.vectors import VectorSet, read_vectors, write_vector_folder
from fusionrank.pipelines.cli import app
from fusionrank.pipelines.config import ConfigError, load_run_config

BAD = Path(__file__).parent / "data" / "bad"
COLUMNS = "user=uid,item=sku,timestamp=ts"
runner = CliRunner()


@dataclass(frozen=True)
class Case:
    """A bad input, the command that reads it, and what its one line must say."""

    name: str
    args: Callable[[Path], list[str]]
    """The command line, given the folder holding a copy of ``tests/data/bad``."""
    says: tuple[str, ...]
    """Parts of the error line (file name, row, column or key)."""
    final: str | None = None
    """A path (relative to that folder) that must not exist afterwards."""
    marks: tuple = ()


def _import(interactions: str, items: str | None = None) -> Callable[[Path], list[str]]:
    def args(w: Path) -> list[str]:
        out = ["data", "import", "--name", "shop", "--root", str(w / "data")]
        out += ["--interactions", str(w / interactions), "--columns", COLUMNS]
        return out + (["--items", str(w / items)] if items else [])

    return args


def _run(config: str) -> Callable[[Path], list[str]]:
    return lambda w: ["run", str(w / config), "--quiet"]


def _fetch(source: str) -> Callable[[Path], list[str]]:
    return lambda w: ["data", "fetch", "ml-100k", "--root", str(w / "data"), "--source", str(w / source)]


IMPORTED = "data/shop"
CASES = [
    Case(
        "unterminated quote",
        _import("unterminated_quote.csv"),
        ("unterminated_quote.csv", "row 2", "quote"),
        IMPORTED,
    ),
    Case("ragged rows", _import("ragged_rows.csv"), ("ragged_rows.csv", "row 3", "4 fields"), IMPORTED),
    Case("not UTF-8", _import("not_utf8.csv"), ("not_utf8.csv", "row 2", "UTF-8"), IMPORTED),
    Case("empty file", _import("empty.csv"), ("empty.csv", "empty"), IMPORTED),
    Case("header only", _import("header_only.csv"), ("header_only.csv", "no data rows"), IMPORTED),
    Case(
        "empty user id",
        _import("empty_user_id.csv"),
        ("empty_user_id.csv", "row 2", "'uid'", "empty id"),
        IMPORTED,
    ),
    Case(
        "null item id",
        _import("nan_item_id.jsonl"),
        ("nan_item_id.jsonl", "row 2", "'sku'", "empty id"),
        IMPORTED,
    ),
    Case(
        "ids 1 and 1.0 collide",
        _import("colliding_ids.jsonl"),
        ("colliding_ids.jsonl", "row 2", "'uid'", "'1' (row 1)", "1.0 (row 2)"),
        IMPORTED,
    ),
    Case(
        "negative timestamp",
        _import("negative_timestamp.csv"),
        ("negative_timestamp.csv", "row 2", "'ts'", "negative"),
        IMPORTED,
    ),
    Case(
        "text timestamp",
        _import("text_timestamp.csv"),
        ("text_timestamp.csv", "row 2", "'ts'", "'yesterday'"),
        IMPORTED,
    ),
    Case(
        "duplicate catalogue ids",
        _import("events_ok.csv", "duplicate_item_ids.csv"),
        ("duplicate_item_ids.csv", "row 3", "'sku'", "duplicate item id 'a'", "row 1"),
        IMPORTED,
    ),
    Case(
        "atomic file with an empty user id",
        lambda w: ["evaluate", "--dataset", "atomic-empty-id", "--root", str(w / "atomic"), "--model", "pop"],
        ("atomic-empty-id.inter", "row 2", "'user_id'", "empty id"),
        "atomic/atomic-empty-id/splits",
    ),
    Case(
        "config: unknown key",
        _run("config_unknown_key.yaml"),
        ("config_unknown_key.yaml", "ranker.learnig_rate"),
        "runs",
    ),
    Case(
        "config: unknown model",
        _run("config_unknown_model.yaml"),
        ("config_unknown_model.yaml", "models.easy"),
        "runs",
    ),
    Case(
        "config: wrong type",
        _run("config_wrong_type.yaml"),
        ("config_wrong_type.yaml", "models.ease", "reg"),
        "runs",
    ),
    Case(
        "vectors: a shard is missing",
        _run("vectors_missing_shard.yaml"),
        ("vectors_missing_shard.yaml", "dataset.profile.vectors.text", "vectors-00000.parquet", "missing"),
        "runs",
    ),
    Case(
        "vectors: rows disagree",
        _run("vectors_rows.yaml"),
        ("vectors_rows.yaml", "vectors-00000.parquet", "3 rows", "says 4"),
        "runs",
    ),
    Case(
        "vectors: dim disagrees",
        _run("vectors_dim.yaml"),
        ("vectors_dim.yaml", "vectors-00000.parquet", "dim 4", "says 8"),
        "runs",
    ),
    Case(
        "truncated safetensors model",
        lambda w: [
            "recommend",
            "--run",
            str(w / "truncated_model"),
            "--user",
            "u1",
            "--root",
            str(w / "tiny"),
        ],
        ("truncated_model", "weights.safetensors"),
    ),
    Case(
        "archive: ../ member",
        _fetch("escape_dotdot.zip"),
        ("escape_dotdot.zip", "'../u.data'", "outside"),
        "data/ml-100k",
    ),
    Case(
        "archive: absolute member",
        _fetch("escape_absolute.zip"),
        ("escape_absolute.zip", "'/tmp/u.data'"),
        "data/ml-100k",
    ),
    Case(
        "archive: link out (zip)",
        _fetch("escape_link.zip"),
        ("escape_link.zip", "links to", "outside"),
        "data/ml-100k",
    ),
    Case(
        "archive: link out (tar)",
        _fetch("escape_link.tar.gz"),
        ("escape_link.tar.gz", "links to", "outside"),
        "data/ml-100k",
    ),
    Case(
        "source: not an archive", _fetch("events_ok.csv"), ("events_ok.csv", "not an archive"), "data/ml-100k"
    ),
    Case(
        "source: a broken zip", _fetch("broken.zip"), ("broken.zip", "not a readable archive"), "data/ml-100k"
    ),
    Case("source: missing", _fetch("no-such-folder"), ("no-such-folder", "does not exist"), "data/ml-100k"),
]


# --- generated cases ------------------------------------------------------------------------
def _grouplens(put: Callable[[str, bytes], None]) -> None:
    put("ml-100k/u.data", b"1\t10\t4\t100\n")
    put("ml-100k/u.item", b"10|Heat (1995)|01-Jan-1995||http://x|" + b"|".join([b"0"] * 19) + b"\n")
    put("ml-100k/u.user", b"1|24|M|technician|85711\n")


def _zip(path: Path, extra: Callable[[zipfile.ZipFile], None]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        _grouplens(z.writestr)
        extra(z)


def _zip_link(z: zipfile.ZipFile) -> None:
    info = zipfile.ZipInfo("ml-100k/passwd")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    z.writestr(info, "../../etc/passwd")


def _tar_link(path: Path) -> None:
    with tarfile.open(path, "w:gz") as t:

        def put(name: str, payload: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))

        _grouplens(put)
        link = tarfile.TarInfo("ml-100k/u.genre")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(link)


def _vectors_config(w: Path, name: str, break_it: Callable[[Path, dict], None]) -> None:
    folder = w / f"vectors_{name}"
    write_vector_folder(
        folder, ["a", "b", "c"], np.ones((3, 4), np.float32), encoder="test", weights={}, normalised=False
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    break_it(folder, manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    dataset = {
        "interactions": "events_ok.csv",
        "items": "items_ok.csv",
        "columns": {"user": "uid", "item": "sku", "timestamp": "ts"},
        "text": "{title}",
        "profile": {"vectors": {"text": folder.name}},
    }
    config = {"name": "bad", "out": "runs", "dataset": dataset, "models": {"content-knn": {}}}
    (w / f"vectors_{name}.yaml").write_text(json.dumps(config))  # JSON is YAML


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A data root with ``tiny`` and a ``train --out`` folder of EASE on it."""
    base = tmp_path_factory.mktemp("trained")
    write_atomic(base / "tiny" / "tiny", "tiny")
    res = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "tiny",
            "--root",
            str(base / "tiny"),
            "--model",
            "ease",
            "--out",
            str(base / "run"),
        ],
    )
    assert res.exit_code == 0, res.output
    return base


@pytest.fixture
def work(tmp_path: Path, trained: Path, monkeypatch) -> Path:
    """A copy of ``tests/data/bad`` plus the generated cases; the working directory."""
    w = tmp_path / "bad"
    shutil.copytree(BAD, w)
    _zip(w / "escape_dotdot.zip", lambda z: z.writestr("../u.data", b"1\t10\t4\t100\n"))
    _zip(w / "escape_absolute.zip", lambda z: z.writestr("/tmp/u.data", b"1\t10\t4\t100\n"))
    _zip(w / "escape_link.zip", _zip_link)
    _tar_link(w / "escape_link.tar.gz")
    (w / "broken.zip").write_bytes(b"PK\x03\x04 this is not a whole zip")
    _vectors_config(w, "missing_shard", lambda f, m: (f / "vectors-00000.parquet").unlink())
    _vectors_config(w, "rows", lambda f, m: m["shards"][0].update(rows=4) or m.update(rows=4))
    _vectors_config(w, "dim", lambda f, m: m.update(dim=8))
    shutil.copytree(trained / "tiny", w / "tiny")
    shutil.copytree(trained / "run", w / "truncated_model")
    weights = w / "truncated_model" / "model" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    monkeypatch.chdir(w)
    return w


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=c.marks) for c in CASES])
def test_bad_input_gives_one_clear_line(case: Case, work: Path) -> None:
    before = _files(work)
    res = runner.invoke(app, case.args(work))
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert "Traceback" not in res.output + res.stderr
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), (res.exception, res.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for part in case.says:
        assert part in lines[0], lines[0]
    assert _files(work) == before, "a file was written"
    if case.final is not None:
        assert not (work / case.final).exists()


def test_debug_shows_the_traceback(work: Path) -> None:
    """``--debug`` lets the error through with its traceback (the real executable)."""
    exe = Path(sys.executable).with_name("fusionrank")
    args = _import("empty_user_id.csv")(work)
    env = {**os.environ, "COLUMNS": "200"}
    plain = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)
    assert plain.returncode == 2 and plain.stderr.strip().count("\n") == 0, plain.stderr
    assert plain.stderr.startswith("error: file ") and "Traceback" not in plain.stderr
    debug = subprocess.run([str(exe), *args, "--debug"], capture_output=True, text=True, env=env, timeout=300)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "DataError" in debug.stderr
    assert not (work / IMPORTED).exists()


# --- the same checks through the library ------------------------------------------------------
def test_text_and_number_ids_that_read_the_same_are_refused() -> None:
    events = pd.DataFrame({"user_id": [1, "1", 2], "item_id": ["a", "b", "c"]}, dtype=object)
    with pytest.raises(DataError, match=r"ids 1 \(row 1\) and '1' \(row 2\) both read as '1'") as err:
        load_interactions(events)
    assert (err.value.row, err.value.column) == (2, "user_id")
    same_number = pd.DataFrame({"user_id": [1, 1.0, "x"], "item_id": ["a", "b", "c"]}, dtype=object)
    assert load_interactions(same_number)["user_id"].tolist() == ["1", "1", "x"]


def test_float_ids_read_as_the_integers_they_are(tmp_path: Path) -> None:
    pd.DataFrame({"item_id": [1.0, 2.5, 3.0], "title": ["a", "b", "c"]}).to_parquet(
        tmp_path / "items.parquet"
    )
    assert load_catalogue(tmp_path / "items.parquet")["item_id"].tolist() == ["1", "2.5", "3"]


def test_csv_header_and_row_problems(tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfuser_id,item_id\nu1,a\n")
    assert load_interactions(bom)["user_id"].tolist() == ["u1"]
    twice = tmp_path / "twice.csv"
    twice.write_text("user_id,user_id\nu1,a\n")
    with pytest.raises(DataError, match="twice"):
        read_file(twice)
    long = tmp_path / "long.csv"  # pandas would quietly take the first column as an index
    long.write_text("user_id,item_id\nu1,a,x\nu2,b,y\n")
    with pytest.raises(DataError, match="row has 3 fields, the header has 2") as err:
        read_file(long)
    assert err.value.row == 1
    inf = tmp_path / "inf.csv"
    inf.write_text("user_id,item_id,stars\nu1,a,4\nu2,b,inf\n")
    with pytest.raises(DataError, match="not a \\(finite\\) number") as err:
        load_interactions(inf, columns=InteractionColumns(rating="stars"))
    assert err.value.row == 2


def test_atomic_file_that_is_not_utf8_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "x.inter"
    path.write_bytes(b"user_id:token\titem_id:token\nu1\ta\nu2\tb\xff\n")
    with pytest.raises(DataError, match="not UTF-8") as err:
        read_atomic(path)
    assert (err.value.file, err.value.row) == (str(path), 2)


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda f: (f / "manifest.json").write_text("{"), "manifest.json: not valid JSON"),
        (lambda f: (f / "vectors-00000.parquet").write_bytes(b"PAR1 cut"), "not a readable Parquet shard"),
        (
            lambda f: shutil.copy(f / "vectors-00000.parquet", f / "vectors-00001.parquet"),
            "vectors-00001.parquet is in the folder but not in manifest.json",
        ),
    ],
)
def test_damaged_vectors_folder_is_named(tmp_path: Path, damage, says) -> None:
    folder = tmp_path / "vecs"
    write_vector_folder(
        folder, ["a", "b"], np.ones((2, 3), np.float32), encoder="t", weights={}, normalised=False
    )
    assert VectorSet.open(folder).rows == 2
    damage(folder)
    for read in (VectorSet.open, read_vectors):
        with pytest.raises(DataError, match=says):
            read(folder)


def test_config_that_is_not_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nmodels: [\n")
    with pytest.raises(ConfigError, match=r"c.yaml: line 3, column 1: not valid YAML"):
        load_run_config(path)
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="c.yaml: not UTF-8"):
        load_run_config(path)


def test_truncated_weights_are_named_by_load_model(work: Path) -> None:
    """Without the train folder's checksums (a model folder copied on its own), ``load_model``
    itself must name the damaged file with an error the CLI reports in one line."""
    from fusionrank import load_model

    with pytest.raises((ValueError, OSError), match="weights.safetensors"):
        load_model(work / "truncated_model" / "model")
