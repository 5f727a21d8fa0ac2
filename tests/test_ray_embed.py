"""The Ray engine of batch embedding: the same folder as the local engine (text and images,
bad rows included), resumption across engines, refusal of other settings, an actor process
that dies mid-job, and the CLI flags.

One Ray instance serves the module (2 CPUs, no dashboard); the engine joins it because Ray
is already initialised in this process, and leaves it running.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from fusionrank.data.vectors import read_vectors
from fusionrank.encoders.engine import EmbedConfig, EmbedSettingsError, RayOptions, embed, embed_catalogue
from fusionrank.encoders.tiny import save_tiny_bert, save_tiny_resnet
from fusionrank.engines import ray_session as ray_support
from fusionrank.engines.ray_engine import RayReport, _report
from fusionrank.engines.ray_session import ray_temp_dir
from fusionrank.io import read_json
from fusionrank.pipelines.cli import app

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("ray_instance")


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert"))


def _text_catalogue(tmp_path, n=40):
    rows = [{"item_id": f"i{k}", "title": f"Film {k} " + "word " * (k % 5)} for k in range(n)]
    rows[3]["title"] = ""  # empty text
    rows[9]["item_id"] = "i2"  # duplicate id
    path = tmp_path / "catalogue.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _same_folder(a, b):
    """Same ids, vectors (1e-5), errors, manifest and job fingerprint."""
    ids_a, vec_a = read_vectors(a)
    ids_b, vec_b = read_vectors(b)
    assert list(ids_a) == list(ids_b)
    np.testing.assert_allclose(vec_a, vec_b, atol=1e-5)
    pd.testing.assert_frame_equal(
        pd.read_parquet(a / "errors.parquet"), pd.read_parquet(b / "errors.parquet")
    )
    assert read_json(a / "manifest.json") == read_json(b / "manifest.json")
    assert read_json(a / "job.json") == read_json(b / "job.json")


def test_text_on_ray_equals_the_local_engine(tmp_path, bert_dir):
    path = _text_catalogue(tmp_path)
    settings = {"model": str(bert_dir), "fields": ["title"], "shard_size": 8, "batch_size": 4, "quiet": True}
    embed(path, tmp_path / "local", **settings)
    said: list[str] = []
    config = EmbedConfig(model=str(bert_dir), fields=("title",), shard_size=8, batch_size=4, quiet=True)
    embed_catalogue(
        path, tmp_path / "ray", config, engine="ray", ray_options=RayOptions(actors=2), log=said.append
    )
    on_ray = embed(path, tmp_path / "ray", engine="ray", actors=2, **settings)  # resumes: nothing left
    line = next(s for s in said if s.startswith("ray: "))
    assert re.fullmatch(
        r"ray: 5 shards on 1 node\(s\) \(5 on \w{8}\); first shard back after [\d.]+s, then [\d.]+ items/s",
        line,
    ), line
    assert (on_ray.rows, on_ray.manifest["errors"], len(on_ray.manifest["shards"])) == (38, 2, 5)
    assert sorted(on_ray.errors()["reason"]) == ["duplicate item id 'i2'", "empty text"]
    _same_folder(tmp_path / "ray", tmp_path / "local")
    assert not list((tmp_path / "ray").glob(".*tmp*"))
    assert ray.is_initialized(), "the engine joined the module's Ray instance and left it running"


def test_images_on_ray_equal_the_local_engine(tmp_path):
    weights = save_tiny_resnet(tmp_path / "r18.safetensors")
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for k in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / f"{k}.jpg")
        rows.append({"item_id": f"i{k}", "image": f"{k}.jpg"})
    data = (root / "0.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "outside.jpg").write_bytes(data)
    rows[2:2] = [
        {"item_id": "missing", "image": "nope.jpg"},
        {"item_id": "truncated", "image": "broken.jpg"},
        {"item_id": "escape", "image": "../outside.jpg"},
    ]
    path = tmp_path / "catalogue.parquet"
    pd.DataFrame(rows).to_parquet(path)
    settings = {
        "encoder": "image",
        "model": "resnet18",
        "weights": str(weights),
        "image_column": "image",
        "image_root": str(root),
        "shard_size": 4,
        "batch_size": 3,
        "quiet": True,
    }
    embed(path, tmp_path / "local", workers=0, **settings)
    on_ray = embed(path, tmp_path / "ray", engine="ray", actors=1, **settings)  # one decoding worker
    assert (on_ray.rows, on_ray.manifest["errors"], len(on_ray.manifest["shards"])) == (6, 3, 3)
    reasons = on_ray.errors().set_index("item_id")["reason"]
    assert reasons["missing"].startswith("missing image") and "escapes" in reasons["escape"]
    assert reasons["truncated"].startswith("unreadable image")
    _same_folder(tmp_path / "ray", tmp_path / "local")


def test_resume_across_engines_and_refusal(tmp_path, bert_dir):
    path = _text_catalogue(tmp_path)
    settings = {"model": str(bert_dir), "fields": ["title"], "shard_size": 8, "quiet": True}
    clean = tmp_path / "clean"
    embed(path, clean, **settings)
    # A local job killed with shards 1, 2 and 4 unfinished (2 lost only its error part) ...
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    for name in ("manifest.json", "errors.parquet", "vectors-00001.parquet", "vectors-00004.parquet"):
        (out / name).unlink()
    (out / ".errors" / "errors-00002.parquet").unlink()
    inodes = {p.name: p.stat().st_ino for p in out.glob("vectors-*.parquet")}
    # ... is resumed on Ray: the finished shards are kept as they are, the rest is redone.
    embed(path, out, engine="ray", actors=1, **settings)
    _same_folder(out, clean)
    after = {p.name: p.stat().st_ino for p in out.glob("vectors-*.parquet")}
    assert after["vectors-00000.parquet"] == inodes["vectors-00000.parquet"]
    assert after["vectors-00003.parquet"] == inodes["vectors-00003.parquet"]
    assert after["vectors-00002.parquet"] != inodes["vectors-00002.parquet"]
    # The finished folder is not touched again; other settings are refused before Ray runs.
    assert embed(path, out, engine="ray", **settings).rows == 38
    with pytest.raises(EmbedSettingsError, match="pooling"):
        embed(path, out, engine="ray", pooling="cls", **settings)
    # A job finished on Ray, interrupted again, is resumed by the local engine.
    for name in ("manifest.json", "errors.parquet", "vectors-00002.parquet"):
        (out / name).unlink()
    embed(path, out, **settings)
    _same_folder(out, clean)


def test_an_actor_that_dies_mid_job_is_restarted_and_the_job_completes(tmp_path, bert_dir):
    path = _text_catalogue(tmp_path)
    config = EmbedConfig(model=str(bert_dir), fields=("title",), shard_size=8, quiet=True)
    marker = tmp_path / "died-once"
    options = RayOptions(actors=1, exit_at=(str(marker), 2, 1))
    manifest = embed_catalogue(path, tmp_path / "out", config, engine="ray", ray_options=options)
    assert marker.exists(), "the actor process exited on shard 2"
    assert manifest["rows"] + manifest["errors"] == 40
    embed_catalogue(path, tmp_path / "clean", config)
    _same_folder(tmp_path / "out", tmp_path / "clean")


def test_a_shard_that_kills_its_worker_every_time_fails_the_job_after_the_restarts(tmp_path, bert_dir):
    """Ray's default would restart the actor and retry the shard forever; here the job stops
    after ``restarts`` + 1 deaths with one error naming the unfinished shards, and the shards
    written before stay for a rerun."""
    path = _text_catalogue(tmp_path)
    config = EmbedConfig(model=str(bert_dir), fields=("title",), shard_size=8, quiet=True)
    counter = tmp_path / "deaths"
    options = RayOptions(actors=1, restarts=1, exit_at=(str(counter), 3, 99))
    with pytest.raises(RuntimeError, match=r"died 2 times embedding shard\(s\) among \[.*3.*\]"):
        embed_catalogue(path, tmp_path / "out", config, engine="ray", ray_options=options)
    assert counter.read_text() == "2", "one start and one restart, then the job failed"
    assert not (tmp_path / "out" / "manifest.json").exists()
    manifest = embed_catalogue(path, tmp_path / "out", config)  # the local engine resumes the job
    assert manifest["rows"] + manifest["errors"] == 40


LOCAL_INSTANCE = """
import sys
import ray
from typer.testing import CliRunner
from fusionrank.pipelines.cli import app

res = CliRunner().invoke(app, sys.argv[1:])
assert res.exit_code == 0, res.output
assert not ray.is_initialized(), "the job's own Ray instance was shut down"
"""


def test_the_report_separates_start_up_from_the_steady_rate():
    """With 2 actors, the steady rate counts the rows back after the second shard over the
    time since it came back; the first shard's time is the start-up figure."""
    back = [(10.0, 100), (10.5, 100), (11.5, 100), (12.5, 100), (13.0, 50)]
    report = _report({"abcdef0123": 5}, back, actors=2)
    assert report.first_back_s == 10.0
    assert report.steady_items_per_s == pytest.approx(250 / 2.5)
    assert report.summary() == (
        "ray: 5 shards on 1 node(s) (5 on abcdef01); first shard back after 10.0s, then 100.0 items/s"
    )
    assert _report({"n": 2}, back[:2], actors=2).steady_items_per_s is None  # no shard after start-up
    assert RayReport({}).summary() == "ray: 0 shards on 0 node(s) ()"


def test_cli_on_a_local_ray_instance_of_its_own(tmp_path, bert_dir):
    """Without Ray running in the process, the job starts a local instance (its files under
    the system temp folder) and shuts it down at the end."""
    path = _text_catalogue(tmp_path, n=12)
    args = ["embed", "--catalogue", str(path), "--model", str(bert_dir), "--fields", "title", "--quiet"]
    args += ["--shard-size", "6", "--out", str(tmp_path / "out"), "--engine", "ray", "--actors", "1"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-c", LOCAL_INSTANCE, *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_json(tmp_path / "out" / "manifest.json")["rows"] == 10
    assert not [p for p in tmp_path.iterdir() if "ray" in p.name.lower()], "no Ray files in the work folder"
    assert ray_temp_dir().is_dir() and ray_temp_dir().parent == Path(tempfile.gettempdir())


class _FakeRay:
    """Records what :func:`ray_session` asks of Ray."""

    def __init__(self, running=False):
        self.running, self.calls = running, []

    def is_initialized(self):
        return self.running

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        self.running = True

    def shutdown(self):
        self.calls.append(("shutdown", {}))
        self.running = False

    def get_runtime_context(self):
        return type("Context", (), {"get_session_name": lambda _: "session_fake"})()


@pytest.mark.parametrize("address", [None, "10.0.0.1:6379"])
def test_ray_session_shuts_down_what_it_started_or_joined_also_after_an_error(monkeypatch, address, tmp_path):
    fake = _FakeRay()
    monkeypatch.setattr(ray_support, "require_ray", lambda: fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(KeyError), ray_support.ray_session(address):
        raise KeyError("boom")
    (name, kwargs), last = fake.calls
    assert name == "init" and last == ("shutdown", {}) and not fake.running
    if address is None:
        assert kwargs["address"] == "local" and kwargs["include_dashboard"] is False
        assert Path(kwargs["_temp_dir"]).parent == Path(tempfile.gettempdir())
    else:
        assert kwargs == {"address": address}
    if address is None:  # the local instance's session folder: kept after a failure, removed after success
        monkeypatch.setattr(ray_support, "ray_temp_dir", lambda: tmp_path)
        (tmp_path / "session_fake").mkdir()
        with pytest.raises(KeyError), ray_support.ray_session(address):
            raise KeyError("boom")
        assert (tmp_path / "session_fake").is_dir()
        with ray_support.ray_session(address):
            pass
        assert not (tmp_path / "session_fake").exists()
    running = _FakeRay(running=True)  # Ray already up in this process: used, left alone
    monkeypatch.setattr(ray_support, "require_ray", lambda: running)
    with pytest.raises(KeyError), ray_support.ray_session(address):
        raise KeyError("boom")
    assert running.calls == [] and running.running


class _ThreadedFakeRay(_FakeRay):
    """A fake Ray that also records which thread started and stopped it."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()  # opened by the caller while Ray starts

    def init(self, **kwargs):
        kwargs["thread"] = threading.current_thread().name
        if kwargs.get("address") == "bad:1":
            raise ConnectionError("no cluster at bad:1")
        kwargs["overlapped"] = self.gate.wait(timeout=10)  # False: the caller waited for the start
        super().init(**kwargs)

    def shutdown(self):
        self.calls.append(("shutdown", {"thread": threading.current_thread().name}))
        self.running = False


def test_ray_in_background_starts_and_stops_ray_in_its_own_thread(monkeypatch, tmp_path):
    fake = _ThreadedFakeRay()
    monkeypatch.setattr(ray_support, "require_ray", lambda: fake)
    monkeypatch.setattr(ray_support, "ray_temp_dir", lambda: tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "session_fake").mkdir()
    with ray_support.ray_in_background() as get_ray:
        fake.gate.set()  # the caller works on while Ray starts
        assert get_ray() is fake and fake.running
    (name, kwargs), (last, stopped) = fake.calls
    assert name == "init" and kwargs["overlapped"] and last == "shutdown" and not fake.running
    assert kwargs["thread"] == stopped["thread"] == "fusionrank-ray"  # Ray's processes die with that thread
    assert not (tmp_path / "session_fake").exists()  # a finished job's logs go
    (tmp_path / "session_fake").mkdir()
    with pytest.raises(KeyError), ray_support.ray_in_background() as get_ray:
        raise KeyError("boom, before asking for Ray")
    assert not fake.running and (tmp_path / "session_fake").is_dir()  # stopped; a failed job's logs stay
    calls = len(fake.calls)
    with pytest.raises(ConnectionError, match="bad:1"), ray_support.ray_in_background("bad:1") as get_ray:
        get_ray()  # the start's error, raised where Ray is asked for
    assert len(fake.calls) == calls and not fake.running  # nothing started, nothing to stop
    running = _FakeRay(running=True)  # Ray already up in this process: used, left alone
    monkeypatch.setattr(ray_support, "require_ray", lambda: running)
    with ray_support.ray_in_background() as get_ray:
        assert get_ray() is running
    assert running.calls == [] and running.running


def test_cli_refuses_ray_flags_without_the_ray_engine(tmp_path, bert_dir):
    path = _text_catalogue(tmp_path, n=12)
    base = ["embed", "--catalogue", str(path), "--model", str(bert_dir), "--fields", "title", "--quiet"]
    runner = CliRunner()
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--actors", "2"])
    assert res.exit_code == 2 and "--actors need(s) --engine ray" in res.output
    res = runner.invoke(
        app, [*base, "--out", str(tmp_path / "c"), "--engine", "ray", "--gpus-per-actor", "1"]
    )
    assert res.exit_code == 2 and "--gpus-per-actor needs --device cuda" in res.output
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "d"), "--engine", "spark"])
    assert res.exit_code == 2 and "engine must be local or ray" in res.output


def test_a_missing_ray_is_one_line(tmp_path, bert_dir, monkeypatch):
    path = _text_catalogue(tmp_path, n=12)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match=r"pip install 'fusionrank\[ray\]'"):
        embed(path, tmp_path / "o", engine="ray", model=str(bert_dir), fields=["title"], quiet=True)
