"""Reliability promises of ``fusionrank run``: same config -> same bytes, a verified stage
cache (checksums, code in the key), one writer per run folder, a full disk named."""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fusionrank.io import StageCacheWarning, StorageError, read_json
from fusionrank.pipelines import cache
from fusionrank.pipelines.config import load_run_config
from fusionrank.pipelines.lock import LOCK_FILE, RunLockedError, folder_lock
from fusionrank.pipelines.run import run_pipeline


def _config(tiny_root: Path, out: Path, **extra) -> Path:
    raw = {
        "name": "t",
        "dataset": "tiny",
        "root": str(tiny_root),
        "out": str(out),
        "modalities": ["text"],
        "models": {
            "pop": {},
            "itemknn": {"k": 10},
            "ease": {"reg": 10.0},
            "bpr": {"epochs": 3},
            "lightgcn": {"epochs": 2},
            "sasrec": {"epochs": 2},
            "hybrid": {"epochs": 3, "modalities": ["text"]},
            "cross-domain": {"epochs": 3},
        },
        "retrieval": {"n": 15, "sources": ["ease", "itemknn", "bpr", "lightgcn", "hybrid", "pop"]},
        "ranker": {"n_estimators": 40, "min_child_samples": 5, "early_stopping_rounds": 10},
        "evaluation": {"ks": [5, 10]},
        "ablation": True,
        **extra,
    }
    path = out.parent / f"{out.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(path: Path, **kw):
    lines: list[str] = []
    out = run_pipeline(load_run_config(path), log=lines.append, **kw)
    return out, lines


@pytest.fixture
def small_run(tiny_root, tmp_path):
    """A finished run of the small config; returns its config path and folder."""
    path = _config(tiny_root, tmp_path / "runs")
    out, _ = _run(path)
    return path, out.folder


def test_two_fresh_runs_write_the_same_metrics_and_ranker(tiny_root, tmp_path, small_run):
    path_a, folder_a = small_run
    path_b = _config(tiny_root, tmp_path / "again")
    _, lines = _run(path_b, force=True)
    folder_b = tmp_path / "again" / "t"
    assert not any("cached" in line for line in lines)
    assert (folder_a / "metrics.json").read_bytes() == (folder_b / "metrics.json").read_bytes()
    assert (folder_a / "ranker" / "model-0.txt").read_bytes() == (
        folder_b / "ranker" / "model-0.txt"
    ).read_bytes()
    metrics = read_json(folder_a / "metrics.json")
    assert "time_s" not in metrics and all("timings" not in m for m in metrics["models"].values())
    timings = read_json(folder_a / "timings.json")
    assert timings["total_s"] > 0
    peaks = list(timings["peak_rss_mb"].values())  # the process's high-water mark after each stage
    assert list(timings["peak_rss_mb"]) == list(timings["stages_s"]) and peaks == sorted(peaks)
    assert peaks[0] > 50


def _stage_files(folder: Path) -> dict[str, Path]:
    return {
        "parquet": folder / "features" / "features_test.parquet",
        "safetensors": folder / "models" / "bpr" / "model" / "weights.safetensors",
        "lightgbm": folder / "ranker" / "model-0.txt",
        "marker": folder / "models" / "ease" / "stage.json",
    }


@pytest.mark.parametrize(
    ("kind", "damage"),
    [
        ("parquet", "truncate"),
        ("parquet", "delete"),
        ("safetensors", "flip"),
        ("lightgbm", "truncate"),
        ("marker", "truncate"),
        ("marker", "delete"),
    ],
)
def test_a_damaged_cached_file_is_recomputed_with_a_warning(small_run, kind, damage):
    path, folder = small_run
    before = (folder / "metrics.json").read_bytes()
    target = _stage_files(folder)[kind]
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        target.write_bytes(data[:-20] + bytes(b ^ 0xFF for b in data[-20:]))
    else:
        target.unlink()
    if (kind, damage) == ("marker", "delete"):  # an unfinished stage: recomputed without a word
        with warnings.catch_warnings():
            warnings.simplefilter("error", StageCacheWarning)
            _, lines = _run(path)
    else:
        with pytest.warns(StageCacheWarning, match="recomputing"):
            _, lines = _run(path)
    assert sum("cached" in line for line in lines) < 10
    assert (folder / "metrics.json").read_bytes() == before
    with warnings.catch_warnings():
        warnings.simplefilter("error", StageCacheWarning)
        _, lines = _run(path)  # repaired: everything verifies again
    assert sum("cached" in line for line in lines) == 10  # 8 models, features, ranker


def test_a_code_change_invalidates_the_cache(small_run, monkeypatch):
    path, _ = small_run
    _, lines = _run(path)
    assert sum("cached" in line for line in lines) == 10
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "another version of the code")
    _, lines = _run(path)
    assert not any("cached" in line for line in lines)


def test_the_code_fingerprint_covers_the_package_sources(tmp_path):
    package = tmp_path / "fusionrank"
    shutil.copytree(Path(cache.__file__).parents[1], package)
    fingerprint = cache.source_fingerprint(package)
    assert cache.source_fingerprint(package) == fingerprint
    source = package / "pipelines" / "cache.py"
    source.write_bytes(source.read_bytes() + b"\n# an edit\n")
    assert cache.source_fingerprint(package) != fingerprint


def test_a_second_run_into_the_same_folder_is_refused(tiny_root, tmp_path):
    path = _config(tiny_root, tmp_path / "runs")
    folder = tmp_path / "runs" / "t"
    with folder_lock(folder), pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        _run(path)


def test_a_lock_left_by_a_killed_run_is_taken_over(tiny_root, tmp_path):
    small = {"models": {"pop": {}, "ease": {"reg": 10.0}}, "retrieval": {"n": 15, "sources": ["ease", "pop"]}}
    path = _config(tiny_root, tmp_path / "runs", **small)
    folder = tmp_path / "runs" / "t"
    folder.mkdir(parents=True)
    dead = {"pid": 999_999_999, "host": "here", "command": "fusionrank run", "started": "earlier"}
    (folder / LOCK_FILE).write_text(json.dumps(dead))  # no process holds its flock
    _, lines = _run(path)
    assert any("taking over the lock of pid 999999999" in line for line in lines)
    assert (folder / LOCK_FILE).read_text() == ""  # released at the end


def test_a_full_disk_names_the_path_and_leaves_no_partial_file(tiny_root, tmp_path, monkeypatch):
    from fusionrank.features.shards import ShardWriter

    path = _config(tiny_root, tmp_path / "runs")
    real = ShardWriter.write

    def full_disk(self, frame):
        if "features_test" in self.path.name:  # the feature stage's second table, half written
            real(self, frame)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, frame)

    monkeypatch.setattr(ShardWriter, "write", full_disk)
    with pytest.raises(StorageError, match=r"could not write .*features_test\.parquet: No space left"):
        _run(path)
    features = tmp_path / "runs" / "t" / "features"
    assert not (features / "features_test.parquet").exists()
    assert not (features / "stage.json").exists()
    assert [p.name for p in features.iterdir() if p.name.startswith(".")] == []
    monkeypatch.setattr(ShardWriter, "write", real)
    _, lines = _run(path)  # space freed: the rerun completes, reusing the finished models
    assert sum("cached" in line for line in lines) == 8
    assert (features / "stage.json").exists()


def test_a_damaged_saved_split_is_made_again(tiny_root):
    import fusionrank as fr

    data = fr.load_dataset("tiny", tiny_root)
    first = fr.split(data, "ratio", seed=3)
    saved = data.home / "splits" / first.config.name / "split.parquet"
    saved.write_bytes(saved.read_bytes()[:100])
    with pytest.warns(StageCacheWarning, match="split.parquet has 100 bytes"):
        again = fr.split(data, "ratio", seed=3)
    pd.testing.assert_frame_equal(first.train, again.train)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StageCacheWarning)
        fr.split(data, "ratio", seed=3)  # repaired
