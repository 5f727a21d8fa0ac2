"""``fusionrank serve``: a real uvicorn server on a free loopback port, asked with a real
httpx client, on a small ``fusionrank run``. Its answers must be ``fusionrank recommend``'s."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from conftest import write_atomic  # noqa: E402

import fusionrank as fr  # noqa: E402
from fusionrank.data.text import compose_text, field_text  # noqa: E402
from fusionrank.pipelines.added_items import LOG_NAME, ItemLog  # noqa: E402
from fusionrank.pipelines.config import load_run_config  # noqa: E402
from fusionrank.pipelines.recommend import OpenRun, recommend  # noqa: E402
from fusionrank.pipelines.run import run_pipeline  # noqa: E402
from fusionrank.serving.app import create_app  # noqa: E402
from fusionrank.serving.state import ServedRun  # noqa: E402

FEATURES = {"age": 31, "gender": "F", "occupation": "writer"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """uvicorn serving ``app`` in a thread of this process, on a free loopback port."""

    def __init__(self, app) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> tuple[Path, Path]:
    """A finished ``fusionrank run`` on the tiny dataset (its folder, its data root)."""
    base = tmp_path_factory.mktemp("serve")
    root = base / "data"
    write_atomic(root / "tiny", "tiny")
    raw = {
        "name": "t",
        "dataset": "tiny",
        "root": str(root),
        "out": str(base / "runs"),
        "modalities": [],
        "models": {"pop": {}, "itemknn": {"k": 10}, "ease": {"reg": 10.0}},
        "retrieval": {"n": 15, "sources": ["ease", "itemknn", "pop"]},
        "ranker": {"n_estimators": 40, "min_child_samples": 5, "early_stopping_rounds": 10},
        "evaluation": {"ks": [5, 10]},
        "ablation": False,
    }
    path = base / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = run_pipeline(load_run_config(path), log=lambda m: None)
    return out.folder, root


@pytest.fixture(scope="module")
def served(small_run):
    """The small run behind a real uvicorn server (the run's folder is a copy, so the
    items added here stay out of the other fixtures' way)."""
    folder, root = small_run
    copy = folder.parent / "served"
    shutil.copytree(folder, copy)
    state = ServedRun.load(copy, root)
    with Server(create_app(state)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        yield client, state, copy, root


def _items(answer) -> pd.DataFrame:
    return pd.DataFrame(answer.json())


def _assert_same(answer, table: pd.DataFrame) -> None:
    got = _items(answer)
    assert got["item_id"].tolist() == table["item_id"].tolist()
    assert got["rank"].tolist() == table["rank"].tolist()
    np.testing.assert_array_equal(got["score"].to_numpy(), table["score"].to_numpy(np.float64))
    for column in ("title", "why"):
        if column in table.columns:
            assert got[column].fillna("").tolist() == table[column].tolist()


def test_known_users_get_the_answer_of_fusionrank_recommend(served):
    client, state, folder, root = served
    users = [u for u in state.users.ids if state.has_history(u)][:6]
    assert len(users) == 6
    for user in users:
        expected = recommend(folder, user, 5, root)
        answer = client.get("/recommend", params={"user": user, "k": 5})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-fusionrank-source"] == "LightGBM ranker"
        _assert_same(answer, expected)
        _assert_same(client.post("/recommend", json={"user": user, "k": 5}), expected)
    explained = recommend(folder, users[0], 5, root, explain=True)
    answer = client.get("/recommend", params={"user": users[0], "k": 5, "explain": "true"})
    _assert_same(answer, explained)
    assert all(r["why"] for r in answer.json())


def test_unknown_user_from_side_features_is_the_cold_start_path(served):
    client, state, folder, root = served
    expected = recommend(folder, "newcomer", 4, root, user_features=FEATURES)
    answer = client.post("/recommend", json={"user": "newcomer", "user_features": FEATURES, "k": 4})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-fusionrank-source"] == "side features"
    _assert_same(answer, expected)
    anonymous = client.post("/recommend", json={"user_features": FEATURES, "k": 4})
    assert [r["item_id"] for r in anonymous.json()] == expected["item_id"].tolist()


BAD_REQUESTS = [
    # (method, path, query, body (json) or raw bytes, status, the field the line starts with)
    ("GET", "/recommend", {"user": "ghost"}, None, 404, "user:"),
    ("POST", "/recommend", None, {"user": "ghost", "k": 3}, 404, "user:"),
    ("GET", "/recommend", {}, None, 422, "user:"),
    ("GET", "/recommend", {"user": "u1", "k": 0}, None, 422, "k:"),
    ("GET", "/recommend", {"user": "u1", "k": 101}, None, 422, "k:"),
    ("GET", "/recommend", {"user": "u1", "k": "ten"}, None, 422, "k:"),
    ("POST", "/recommend", None, {"k": 3}, 422, "user:"),
    ("POST", "/recommend", None, {"user": "u1", "k": -1}, 422, "k:"),
    ("POST", "/recommend", None, {"user": "x", "user_features": {"shoe": 3}}, 422, "user_features.shoe:"),
    ("POST", "/recommend", None, {"user": "u1", "colour": "red"}, 422, "colour:"),
    ("POST", "/recommend", None, b'{"user": "u1", "k": ', 400, "body: malformed JSON"),
    ("POST", "/recommend", None, b"[1, 2]", 422, "body:"),
    ("GET", "/similar", {"item": "no-such-item"}, None, 404, "item:"),
    ("GET", "/similar", {"item": "i1", "k": 1000}, None, 422, "k:"),
    ("GET", "/similar", {"item": "i1", "kind": "both-ways"}, None, 422, "kind:"),
    ("GET", "/audience", {"item": "no-such-item"}, None, 404, "item:"),
    ("POST", "/items", None, {"items": []}, 422, "items:"),
    ("POST", "/items", None, {"things": []}, 422, "items:"),
    ("POST", "/items", None, b"{items: 1}", 400, "body: malformed JSON"),
    ("POST", "/items", None, {"items": [{"movie_title": "No id"}]}, 422, "items[0].item_id:"),
    (
        "POST",
        "/items",
        None,
        {"items": [{"item_id": "i3", "movie_title": "Known"}]},
        409,
        "items[0].item_id:",
    ),
    (
        "POST",
        "/items",
        None,
        {"items": [{"item_id": "n", "title": "A"}, {"item_id": "n", "title": "B"}]},
        422,
        "items[1].item_id:",
    ),
    ("POST", "/items", None, {"items": [{"item_id": "empty"}]}, 422, "items[0]:"),
    (
        "POST",
        "/items",
        None,
        {"items": [{"item_id": "x", "title": "X", "image": "../../etc/passwd"}]},
        422,
        "items[0].image:",
    ),
    (
        "POST",
        "/items",
        None,
        {"items": [{"item_id": "x", "title": "X", "image": "/etc/passwd"}]},
        422,
        "items[0].image:",
    ),
    ("GET", "/nowhere", {}, None, 404, "Not Found"),
]


@pytest.mark.parametrize(("method", "path", "query", "body", "status", "field"), BAD_REQUESTS)
def test_bad_requests_get_one_line_naming_the_field(served, method, path, query, body, status, field):
    client, state, folder, _ = served
    state.image_root = folder  # a configured root, so the paths above are refused for leaving it
    before = (len(state.added), ItemLog(folder).size())
    kwargs = (
        {"content": body, "headers": {"content-type": "application/json"}}
        if isinstance(body, bytes)
        else {"json": body}
    )
    answer = client.request(method, path, params=query, **kwargs)
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail.startswith(field), detail
    assert (len(state.added), ItemLog(folder).size()) == before  # nothing half-added
    assert client.get("/health").status_code == 200  # and the service goes on


def test_added_items_are_recommended_kept_and_equal_in_fusionrank_recommend(served):
    client, state, folder, root = served
    user = next(u for u in state.users.ids if state.has_history(u))
    top = _items(client.get("/recommend", params={"user": user, "k": 100}))
    catalogue = state.data.items.set_index("item_id")
    # copies of all the user's top items (same text): the copy of the one with the best
    # content score is placed second at worst
    items = [
        {
            "item_id": f"copy-{i}",
            "title": field_text(catalogue.loc[i, "movie_title"]),
            "class": field_text(catalogue.loc[i, "class"]),
        }
        for i in top["item_id"]
    ]
    n = len(items)
    # one item of the batch is refused: none is added
    refused = client.post("/items", json={"items": [*items, {"item_id": "i0", "title": "dup"}]})
    assert refused.status_code == 409 and refused.json()["detail"].startswith(f"items[{n}].item_id")
    assert client.get("/health").json()["added_items"] == 0
    added = client.post("/items", json={"items": items})
    assert added.status_code == 200, added.text
    assert added.json()["added"] == n and added.json()["total_added"] == n
    assert client.get("/health").json()["added_items"] == n
    answer = client.get("/recommend", params={"user": user, "k": 5})
    got = _items(answer)
    copies = got[got["item_id"].str.startswith("copy-")]
    assert len(copies) >= 1 and copies["rank"].min() <= 2
    assert copies["why"].str.startswith("added item").all()
    assert got["score"].is_monotonic_decreasing and got["rank"].tolist() == [1, 2, 3, 4, 5]
    assert "added items" in answer.headers["x-fusionrank-source"]
    assert copies["title"].isin([field_text(t) for t in catalogue["movie_title"]]).all()
    # the one-shot command reads the log: the same answer and source, for every known user
    # (the service places added items without pandas, the command through place_by_content)
    for other in [u for u in state.users.ids if state.has_history(u)][:8]:
        served_answer, expected = (
            client.get("/recommend", params={"user": other, "k": 5}),
            recommend(folder, other, 5, root),
        )
        _assert_same(served_answer, expected)
        assert served_answer.headers["x-fusionrank-source"] == expected.attrs["source"]
    # which users should see an added item; its content neighbours include its original
    audience = client.get("/audience", params={"item": items[0]["item_id"], "k": 5})
    assert audience.status_code == 200 and len(audience.json()) == 5
    similar = client.get("/similar", params={"item": items[0]["item_id"], "k": 3}).json()
    assert similar[0]["item_id"] == top["item_id"][0] and similar[0]["why"] == "content"
    assert similar[0]["score"] == pytest.approx(1.0, abs=1e-5)
    # a restart keeps them: a new process opening the folder replays the log
    lines = (folder / LOG_NAME).read_text().splitlines()
    assert len(lines) == 1 and len(json.loads(lines[0])["items"]) == n
    assert OpenRun.open(folder, root).added.ids == tuple(r["item_id"] for r in items)


def test_a_torn_log_line_is_not_read_and_is_cut_by_the_next_append(tmp_path):
    log = ItemLog(tmp_path)
    log.append([{"item_id": "a"}], np.ones((1, 2), np.float32))
    with open(log.path, "ab") as handle:
        handle.write(b'{"time": 1, "items": [{"item_id": "b"')  # a writer killed mid-line
    batches, _ = log.read()
    assert [b["items"][0]["item_id"] for b in batches] == ["a"]
    with log.locked():
        log.append([{"item_id": "c"}], np.full((1, 2), 0.1, np.float32))
    batches, end = log.read()
    assert [b["items"][0]["item_id"] for b in batches] == ["a", "c"] and end == log.size()
    assert np.asarray(batches[1]["vectors"], np.float32)[0, 0] == np.float32(0.1)  # exact round trip


def test_similar_items_health_run_and_docs(served):
    client, state, folder, _ = served
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["kind"] == "run" and health["items"] == state.split.n_items
    info = client.get("/run").json()
    assert info["kind"] == "run" and "ltr" in info["metrics"]["models"] and info["settings"]["name"] == "t"
    similar = client.get("/similar", params={"item": "i1", "k": 4}).json()
    kinds = [r["why"] for r in similar]
    name, _ = state.item_weights()  # the run's first model with item-item weights
    assert kinds.count("content") == 4 and 1 <= kinds.count(f"collaborative ({name})") <= 4
    assert all(r["item_id"] != "i1" for r in similar)
    content, collab = state.similar("i1", 4)  # the pandas answer: the service builds records without it
    got = [r for r in similar if r["why"] == "content"]
    assert [r["item_id"] for r in got] == content["item_id"].tolist()
    assert [r["score"] for r in got] == pytest.approx(content["score"].tolist())
    assert [r["rank"] for r in got] == content["rank"].tolist()
    assert [r.get("title", "") for r in got] == content.get("title", pd.Series([""] * len(got))).tolist()
    only = client.get("/similar", params={"item": "i1", "k": 4, "kind": "collaborative"}).json()
    assert [r["item_id"] for r in only] == collab["item_id"].tolist()
    assert [r["score"] for r in only] == pytest.approx(collab["score"].tolist())
    spec = client.get("/openapi.json").json()
    assert {"/health", "/recommend", "/items", "/similar", "/run", "/audience"} <= set(spec["paths"])
    assert {"get", "post"} <= set(spec["paths"]["/recommend"])
    assert "RankedItem" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_parallel_reads_while_items_are_added_are_answered_right(served):
    client, state, folder, root = served
    users = [u for u in state.users.ids if state.has_history(u)][:4]
    before = {u: client.get("/recommend", params={"user": u, "k": 5}).json() for u in users}
    base = client.base_url

    def ask(n: int):
        with httpx.Client(base_url=base, timeout=60) as c:
            user = users[n % len(users)]
            return user, c.get("/recommend", params={"user": user, "k": 5})

    new = [{"item_id": f"par-{n}", "title": f"Film number {n} remade", "class": "Drama"} for n in range(20)]
    with ThreadPoolExecutor(8) as pool:
        asked = [pool.submit(ask, n) for n in range(40)]
        adding = pool.submit(lambda: client.post("/items", json={"items": new}))
        answers = [f.result() for f in asked]
        assert adding.result().status_code == 200
    after = {u: client.get("/recommend", params={"user": u, "k": 5}).json() for u in users}
    for user, answer in answers:
        assert answer.status_code == 200
        assert answer.json() in (before[user], after[user])  # one snapshot or the next, never a mix


def test_the_client_helper_gives_dataframes(served):
    client, state, folder, root = served
    user = next(u for u in state.users.ids if state.has_history(u))
    with fr.ServeClient(str(client.base_url)) as helper:
        table = helper.recommend(user, k=3)
        expected = recommend(folder, user, 3, root)
        assert table["item_id"].tolist() == expected["item_id"].tolist()
        assert helper.recommend(user_features=FEATURES, k=2)["rank"].tolist() == [1, 2]
        assert helper.health()["status"] == "ok"
        with pytest.warns(UserWarning, match=r"items\[0\]\.genres: no genres given"):
            assert helper.add_items([{"item_id": "client-added", "title": "x"}])["added"] == 1
        with pytest.raises(fr.BadRequestError, match="404: user: 'ghost'") as caught:
            helper.recommend("ghost")
        assert caught.value.status == 404


def test_importing_fusionrank_needs_no_fastapi_and_serve_says_what_to_install(tmp_path):
    code = (
        "import sys\n"
        "for name in ('fastapi', 'uvicorn', 'httpx', 'starlette'): sys.modules[name] = None\n"
        "import fusionrank as fr\n"
        "from fusionrank.pipelines.cli import app\n"
        "from typer.testing import CliRunner\n"
        f"res = CliRunner().invoke(app, ['serve', {str(tmp_path)!r}])\n"
        "print(res.exit_code, res.output.strip().splitlines()[-1])\n"
        "try:\n"
        "    fr.ServeClient().health()\n"
        "except fr.MissingExtraError as exc:\n"
        "    print('client:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("2 error: fastapi is not installed") and "fusionrank[serve]" in lines[0]
    assert lines[1].startswith("client: httpx is not installed")


def test_answers_run_on_the_threads_asked_for(tmp_path):
    import torch
    from threadpoolctl import threadpool_info
    from typer.testing import CliRunner

    from fusionrank.pipelines.cli import app as cli
    from fusionrank.serving.app import answer_threads

    before = torch.get_num_threads()
    try:
        answer_threads(1)
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    finally:
        answer_threads(before)
    res = CliRunner().invoke(cli, ["serve", str(tmp_path), "--threads", "0"])
    assert res.exit_code == 2 and "--threads" in res.output and "must be >= 1" in res.output


@pytest.mark.slow
def test_the_command_serves_stops_gracefully_and_a_restart_keeps_added_items(small_run, tmp_path):
    """``fusionrank serve`` in its own process: SIGTERM while a request is in flight, the
    request still gets its answer; the restarted service has the items added before."""
    folder, root = small_run
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "fusionrank"),
                "serve",
                str(copy),
                "--port",
                str(port),
                "--root",
                str(root),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return process
            except httpx.TransportError:
                time.sleep(0.2)
        process.kill()
        raise RuntimeError(f"the service did not start: {process.stdout.read() if process.stdout else ''}")

    first = start()
    items = [
        {"item_id": f"late-{n}", "title": f"A film added late {n}", "class": "Comedy"} for n in range(300)
    ]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lambda: httpx.post(f"{url}/items", json={"items": items}, timeout=120))
        time.sleep(0.3)  # the request is in flight (embedding 300 texts)
        first.send_signal(signal.SIGTERM)
        answer = pending.result()
    assert answer.status_code == 200 and answer.json()["added"] == 300
    assert first.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once done
    second = start()
    try:
        assert httpx.get(f"{url}/health").json()["added_items"] == 300
        assert httpx.get(f"{url}/similar", params={"item": "late-3", "k": 2}).status_code == 200
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)


@pytest.mark.slow
def test_the_docs_page_opens_in_a_real_browser(served, tmp_path):
    """/docs in headless Chromium when there is one (Swagger UI loads its scripts from a
    CDN, so offline the page is only its shell); without a browser, /docs and
    /openapi.json fetched with httpx, and the skip reason says so."""
    client, *_ = served
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text and "/openapi.json" in docs.text
    assert client.get("/openapi.json").json()["info"]["title"] == "fusionrank"
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not binary:
        pytest.skip("no Chromium on PATH: /docs and /openapi.json were fetched with httpx only")
    dom = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            f"{client.base_url}/docs",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "swagger-ui" in dom and "fusionrank" in dom


def test_models_fitted_for_answers_are_saved_in_the_run_and_reloaded(small_run, tmp_path, monkeypatch):
    from fusionrank.io import read_json
    from fusionrank.recommender import Recommender
    from fusionrank.registry import DEFAULT_MODELS

    folder, root = small_run
    copy = tmp_path / "run"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("fitted"))
    first = OpenRun.open(copy, root)
    side = pd.DataFrame([{"user_id": "newcomer", **FEATURES}])
    expected = first.profile_model().recommend(["newcomer"], 5, user_features=side)
    vectors = first.content_vectors()
    users = np.arange(first.split.n_users)
    content = first.content_model().score_content(users, vectors)
    for key in ("profile", "content"):
        assert (copy / "fitted" / key / "model" / "weights.safetensors").is_file()
    assert not list((copy / "fitted").glob(".*"))  # no temporary folder left behind

    def no_fit(self, split):
        raise AssertionError("fitted again")

    monkeypatch.setattr(Recommender, "fit", no_fit)
    second = OpenRun.open(copy, root)
    answer = second.profile_model().recommend(["newcomer"], 5, user_features=side)
    pd.testing.assert_frame_equal(answer, expected)
    np.testing.assert_array_equal(second.content_model().score_content(users, vectors), content)
    # other settings for the new-items model: fitted again and saved over the old one
    monkeypatch.undo()
    name, settings = DEFAULT_MODELS["new items"]
    monkeypatch.setitem(DEFAULT_MODELS, "new items", (name, {**settings, "kernels": [2.0]}))
    OpenRun.open(copy, root).content_model()
    made_by = read_json(copy / "fitted" / "content" / "made_by.json")
    assert made_by[1]["kernels"] == [2.0]
    assert "cold_scales" in made_by[1]  # defaults too: a new default fits it again
    # a damaged saved model is fitted again, not an error
    (copy / "fitted" / "profile" / "model" / "weights.safetensors").write_bytes(b"torn")
    again = OpenRun.open(copy, root).profile_model().recommend(["newcomer"], 5, user_features=side)
    pd.testing.assert_frame_equal(again, expected)


def test_new_items_are_read_with_their_genres(small_run):
    folder, root = small_run
    run = OpenRun.open(folder, root)
    assert run.content_model().content_modalities == ("text", "genres")  # the dataset has genres
    catalogue = run.data.items.set_index("item_id")
    first = run.items.ids[0]
    row = {"item_id": "new", **catalogue.loc[first].to_dict()}
    text = compose_text(row, template=run.data.profile.text)
    # a new item with a catalogue item's text and genres gets that item's content vector
    vector = run.embed_items([row], [text])
    np.testing.assert_allclose(vector[0], run.content_vectors()[0], atol=1e-5)
    # the same text without its genres: only the genres block differs
    bare = run.embed_items([{**row, run.data.profile.genres: None}], [text])
    width = run.content_vectors().shape[1] - len(run.split.genres()[1])
    np.testing.assert_allclose(bare[0, :width], vector[0, :width], atol=1e-6)
    assert not bare[0, width:].any() and vector[0, width:].any()
    # what the genres could not say is told, naming the field; nothing is refused for it
    column = run.data.profile.genres
    assert run.genre_warnings([row], lambda n: f"items[{n}].genres") == []
    told = run.genre_warnings(
        [{**row, column: None}, row, {**row, column: "Nonsense"}], lambda n: f"items[{n}].genres"
    )
    assert len(told) == 2 and told[0].startswith("items[0].genres: no genres given")
    assert "this item is scored as having none" in told[0]
    assert told[1] == "items[2].genres: 'Nonsense' not among the catalogue's genres, left out"
    many = run.genre_warnings([{**row, column: ""}] * 5, lambda n: f"row {n + 1}")
    assert many == [
        "row 1, row 2, row 3 and 2 more: no genres given; the new-items model reads genres "
        "beside the text, so these 5 items are scored as having none"
    ]
    # items logged under another new-items model (other vector widths) are refused in one line
    from fusionrank.errors import InvalidArgumentError
    from fusionrank.pipelines.added_items import AddedItems

    stale = AddedItems().extended([{"item_id": "old"}], np.zeros((1, width), np.float32))
    with pytest.raises(InvalidArgumentError, match="move the log aside"):
        run.added_item_scores(np.arange(2), stale)


def test_an_added_item_may_give_its_genres_as_genres(served):
    client, state, folder, root = served
    column = state.data.profile.genres
    assert column != "genres"  # the tiny dataset names its own column
    genres = field_text(state.data.items[column].iloc[0]).split()
    (row,), (text,) = state.check_new_items([{"item_id": "with-genres", "title": "x", "genres": genres}])
    assert row[column] == genres and "genres" not in row
    assert state.embed_items([row], [text])[0, -len(state.split.genres()[1]) :].any()
    # through the service: an item without genres is added, and the answer says what it lacks
    answer = client.post("/items", json={"items": [{"item_id": "no-genres", "title": "x"}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["added"] == 1 and len(answer.json()["warnings"]) == 1
    assert answer.json()["warnings"][0].startswith("items[0].genres: no genres given")
    answer = client.post(
        "/items", json={"items": [{"item_id": "with-genres", "title": "x", "genres": genres}]}
    )
    assert answer.status_code == 200 and answer.json()["warnings"] == []
