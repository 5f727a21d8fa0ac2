"""What serving buys: ``fusionrank serve`` under load against ``fusionrank recommend`` one
call at a time, on a finished run (the ml-100k demo run by default).

1. The service starts in its own process (``fusionrank serve RUN``); start-up time and
   resident memory (RSS, and its peak) are read from ``/proc`` through psutil.
2. A load generator in this process (httpx with asyncio, on loopback, the same 2 cores as
   the server) runs ``--clients`` concurrent clients in a closed loop (each sends its next
   request as soon as the last is answered: the most the service answers, and a latency
   that is mostly queueing, 32 / throughput on average), then in an open loop (Poisson
   arrivals at ``--rate`` per second, at most ``--clients`` in flight, latency counted from
   when a request was due), over a seeded mix: 80% ``GET /recommend`` for a known user
   (k=10), 10% ``POST /recommend`` for an unknown user with side features drawn from the
   dataset's user table, 10% ``GET /similar`` for a catalogue item. Latency is measured per
   request by the client (p50, p90, p99, max) and throughput as answered requests / wall
   time. Every answer must be a 200.
3. Equality: for ``--check`` known users the service's answer is compared with
   ``fusionrank.pipelines.recommend.recommend`` (items and scores).
4. Beside it, ``fusionrank recommend --run RUN --user U`` as a command, ``--oneshot``
   times one call at a time (the whole process: imports, opening the run, answering).
5. 1,000 new items in one ``POST /items`` (new texts made from catalogue items: their
   title with " (new edition)" and their genres): the request's time, then every known
   user's top 10: how many users see an added item, at which best rank, and how many of
   the items reach anyone's top 10; then the load again, after the adding.

    .venv/bin/python benchmarks/serve.py --run runs/ml100k   # -> benchmarks/results/serve.{json,md}
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil

from fusionrank.columns import ITEM_ID
from fusionrank.data.text import field_text
from fusionrank.evaluation.table import format_table
from fusionrank.io import read_json, write_json
from fusionrank.pipelines.recommend import OpenRun, recommend

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
TARGETS = {"ml-100k": {"p99_ms": 50.0, "rps": 300.0}, "synth-1m": {"p99_ms": 150.0, "rps": 100.0}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory(process: psutil.Process) -> dict[str, float]:
    """RSS and peak RSS (MiB) of the service and its worker processes."""
    procs = [process, *process.children(recursive=True)]
    rss = sum(p.memory_info().rss for p in procs)
    peak = 0
    for p in procs:
        with open(f"/proc/{p.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak += int(line.split()[1]) * 1024
    return {"rss_mib": round(rss / 2**20, 1), "peak_rss_mib": round(peak / 2**20, 1)}


def start_service(run: Path, root: Path | None, port: int, workers: int) -> tuple[subprocess.Popen, float]:
    command = [str(Path(sys.executable).parent / "fusionrank"), "serve", str(run), "--port", str(port)]
    command += ["--workers", str(workers)] + (["--root", str(root)] if root else [])
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the service ended: {process.stderr.read() if process.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process, time.perf_counter() - start
        except httpx.TransportError:
            time.sleep(0.1)


def traffic(opened: OpenRun, n: int, seed: int) -> list[tuple[str, str, dict[str, Any]]]:
    """``n`` requests (kind, method+path, arguments) in the 80/10/10 mix."""
    rng = random.Random(seed)
    known = [u for u in opened.users.ids if opened.has_history(u)]
    items = list(opened.items.ids)
    table = opened.data.users
    columns = list(opened.data.profile.user_features)
    profiles = table[columns].to_dict("records") if table is not None and columns else []
    out = []
    for r in range(n):
        draw = rng.random()
        if draw < 0.8 or not profiles:
            out.append(("known user", "GET /recommend", {"user": rng.choice(known), "k": 10}))
        elif draw < 0.9:
            features = {c: v.item() if hasattr(v, "item") else v for c, v in rng.choice(profiles).items()}
            body = {"user": f"visitor-{r}", "user_features": features, "k": 10}
            out.append(("unknown user", "POST /recommend", body))
        else:
            out.append(("similar items", "GET /similar", {"item": rng.choice(items), "k": 10}))
    return out


async def _send(client: httpx.AsyncClient, route: str, args: dict[str, Any]) -> int:
    method, path = route.split(" ")
    answer = await (client.get(path, params=args) if method == "GET" else client.post(path, json=args))
    return answer.status_code


def _clients(url: str, n: int) -> list[httpx.AsyncClient]:
    """One keep-alive connection per simulated client, each its own ``AsyncClient``: one
    shared pool of ``n`` connections costs the load generator O(n) per request in
    httpcore's pool bookkeeping (it was the bottleneck: ~3 ms of client CPU per request
    at 32 connections, against ~1 ms this way)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return [httpx.AsyncClient(base_url=url, limits=limits, timeout=60) for _ in range(n)]


async def load(url: str, requests: list[tuple[str, str, dict[str, Any]]], clients: int) -> dict[str, Any]:
    """Send ``requests`` with ``clients`` concurrent clients; latency per request."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(requests)):
        queue.put_nowait(i)
    latency = np.zeros(len(requests))
    status = np.zeros(len(requests), np.int64)
    pool = _clients(url, clients)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            _, route, args = requests[i]
            start = time.perf_counter()
            status[i] = await _send(client, route, args)
            latency[i] = time.perf_counter() - start

    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in pool))
        wall = time.perf_counter() - start
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))
    return {"latency": latency, "status": status, "wall": wall}


async def paced(
    url: str, requests: list[tuple[str, str, dict[str, Any]]], clients: int, rate: float, seed: int
) -> dict[str, Any]:
    """Open loop: request ``i`` is due at a Poisson arrival time of ``rate`` per second,
    at most ``clients`` in flight; its latency runs from when it was due (time spent
    waiting for a free client counts, so a slow server cannot hide its backlog)."""
    rng = np.random.default_rng(seed)
    due = np.cumsum(rng.exponential(1 / rate, len(requests)))
    latency = np.zeros(len(requests))
    status = np.zeros(len(requests), np.int64)
    pool = _clients(url, clients)
    free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
    for c in pool:
        free.put_nowait(c)
    try:
        start = time.perf_counter()

        async def one(i: int) -> None:
            client = await free.get()
            try:
                _, route, args = requests[i]
                status[i] = await _send(client, route, args)
                latency[i] = time.perf_counter() - start - due[i]
            finally:
                free.put_nowait(client)

        tasks = []
        for i in range(len(requests)):
            wait = start + due[i] - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))
    return {"latency": latency, "status": status, "wall": wall}


def summary(result: dict[str, Any], requests: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    ms = result["latency"] * 1000
    kinds = np.asarray([r[0] for r in requests])

    def stats(x: np.ndarray) -> dict[str, float]:
        return {
            "n": int(len(x)),
            "p50_ms": round(float(np.percentile(x, 50)), 2),
            "p90_ms": round(float(np.percentile(x, 90)), 2),
            "p99_ms": round(float(np.percentile(x, 99)), 2),
            "max_ms": round(float(x.max()), 2),
        }

    return {
        **stats(ms),
        "requests_per_s": round(len(ms) / result["wall"], 1),
        "wall_s": round(result["wall"], 2),
        "non_200": int((result["status"] != 200).sum()),
        "by_kind": {k: stats(ms[kinds == k]) for k in dict.fromkeys(kinds.tolist())},
    }


def new_items(opened: OpenRun, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` new items made from catalogue items: the title + " (new edition)", the rest of
    the template's fields and the genres (where the dataset has them) as they are."""
    from fusionrank.data.text import template_fields

    table = opened.data.items
    assert table is not None
    rows = table.sample(n=n, random_state=seed, replace=n > len(table)).to_dict("records")
    fields = template_fields(opened.data.profile.text or "")
    genres = opened.data.profile.genres
    if genres and genres in table.columns and genres not in fields:
        fields = [*fields, genres]  # the new-items model reads them beside the text
    title = opened.data.profile.title
    out = []
    for r, row in enumerate(rows):
        item = {f: field_text(row.get(f)) for f in fields}
        if title:
            item[title] = f"{field_text(row.get(title))} (new edition)"
        out.append({"item_id": f"new-{r}", **item})
    return out


def appearances(url: str, users: list[str], added: set[str]) -> dict[str, Any]:
    """Every known user's top 10 after the adding: who sees an added item, where."""
    best: list[int] = []
    reached: set[str] = set()
    with httpx.Client(base_url=url, timeout=60) as client:
        start = time.perf_counter()
        for user in users:
            rows = client.get("/recommend", params={"user": user, "k": 10}).json()
            ranks = [r["rank"] for r in rows if r["item_id"] in added]
            reached |= {r["item_id"] for r in rows if r["item_id"] in added}
            if ranks:
                best.append(min(ranks))
        seconds = time.perf_counter() - start
    counts = pd.Series(best).value_counts().sort_index() if best else pd.Series(dtype=int)
    return {
        "users": len(users),
        "users_with_an_added_item_in_top10": len(best),
        "share_of_users": round(len(best) / max(len(users), 1), 4),
        "best_rank_of_an_added_item": {int(k): int(v) for k, v in counts.items()},
        "added_items_in_someones_top10": len(reached),
        "seconds_for_all_users": round(seconds, 2),
    }


def oneshot(run: Path, root: Path | None, users: list[str]) -> dict[str, Any]:
    """``fusionrank recommend`` as a command, one call at a time."""
    times = []
    for user in users:
        command = [str(Path(sys.executable).parent / "fusionrank"), "recommend", "--run", str(run)]
        command += ["--user", user, "-k", "10"] + (["--root", str(root)] if root else [])
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return {
        "calls": len(times),
        "median_s": round(statistics.median(times), 2),
        "max_s": round(max(times), 2),
        "requests_per_s": round(len(times) / sum(times), 3),
    }


def check_equal(url: str, run: Path, root: Path | None, users: list[str]) -> dict[str, Any]:
    equal = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        for user in users:
            served = client.get("/recommend", params={"user": user, "k": 10}).json()
            table = recommend(run, user, 10, root)
            same_items = [r[ITEM_ID] for r in served] == table[ITEM_ID].tolist()
            same_scores = np.array_equal([r["score"] for r in served], table["score"].to_numpy(np.float64))
            equal += same_items and same_scores
    return {"users": len(users), "equal": equal}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "ml100k")
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--label", default="ml-100k")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--rate", type=float, default=300.0, help="Offered requests/s of the open-loop phase."
    )
    parser.add_argument("--oneshot", type=int, default=5)
    parser.add_argument("--check", type=int, default=20)
    parser.add_argument("--new-items", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve")
    args = parser.parse_args()

    # the service writes its added items into the run folder: measure on a copy
    work = REPO / "benchmarks" / ".work" / "serve" / f"served-{args.label}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(args.run, work, ignore=shutil.ignore_patterns("added_items.jsonl", ".*"))
    opened = OpenRun.open(work, args.root)
    requests = traffic(opened, args.requests, args.seed)
    known = [u for u in opened.users.ids if opened.has_history(u)]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process, startup = start_service(work, args.root, port, args.workers)
    service = psutil.Process(process.pid)
    try:
        print(f"service up in {startup:.1f} s; {memory(service)}", flush=True)
        asyncio.run(load(url, traffic(opened, 300, args.seed + 1), args.clients))  # warm-up
        # this process holds the opened run too: a full collection of it paused the load
        # generator for ~120 ms (requests due then were late); measure the service, not that
        gc.collect()
        gc.freeze()
        load_avg_before = os.getloadavg()
        before = summary(asyncio.run(load(url, requests, args.clients)), requests)
        print("load:", {k: v for k, v in before.items() if k != "by_kind"}, flush=True)
        offered = summary(asyncio.run(paced(url, requests, args.clients, args.rate, args.seed)), requests)
        print(
            f"open loop at {args.rate:g}/s:", {k: v for k, v in offered.items() if k != "by_kind"}, flush=True
        )
        memory_before = memory(service)
        rng = random.Random(args.seed)
        equality = check_equal(url, work, args.root, rng.sample(known, min(args.check, len(known))))
        print("equal to fusionrank recommend:", equality, flush=True)
        rows = new_items(opened, args.new_items, args.seed)
        start = time.perf_counter()
        answer = httpx.post(f"{url}/items", json={"items": rows}, timeout=600)
        add_seconds = time.perf_counter() - start
        if answer.status_code != 200:
            raise RuntimeError(answer.text)
        print(f"{len(rows)} items added in {add_seconds:.2f} s", flush=True)
        seen = appearances(url, known, {r["item_id"] for r in rows})
        print("appearances:", seen, flush=True)
        after = summary(asyncio.run(load(url, requests, args.clients)), requests)
        print("load after adding:", {k: v for k, v in after.items() if k != "by_kind"}, flush=True)
        equality_after = check_equal(url, work, args.root, rng.sample(known, min(args.check, len(known))))
        print("equal to fusionrank recommend after adding:", equality_after, flush=True)
        memory_after = memory(service)
        load_avg_after = os.getloadavg()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    single = oneshot(work, args.root, rng.sample(known, args.oneshot)) if args.oneshot else {}
    print("fusionrank recommend, one call at a time:", single, flush=True)

    target = TARGETS.get(args.label, {})
    results = {
        "label": args.label,
        "run": str(args.run),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_avg_before],
            "load_average_after": [round(x, 2) for x in load_avg_after],
        },
        "settings": {
            "clients": args.clients,
            "requests": args.requests,
            "workers": args.workers,
            "mix": "80% known users (GET /recommend k=10), 10% unknown users with side features "
            "(POST /recommend), 10% similar items (GET /similar k=10)",
            "seed": args.seed,
        },
        "startup_s": round(startup, 2),
        "load": before,
        "open_loop": {"offered_per_s": args.rate, **offered},
        "load_after_adding": after,
        "memory_mib": {"after_start_and_load": memory_before, "after_adding": memory_after},
        "equal_to_fusionrank_recommend": equality,
        "equal_to_fusionrank_recommend_after_adding": equality_after,
        "fusionrank_recommend_one_call_at_a_time": single,
        "add_items": {"items": len(rows), "seconds": round(add_seconds, 2), **seen},
        "targets": target,
        "meets_targets": bool(target)
        and before["p99_ms"] <= target["p99_ms"]
        and before["requests_per_s"] >= target["rps"],
    }
    path = args.out.with_suffix(".json")
    everything = read_json(path) if path.exists() else {}
    everything[args.label] = results  # one entry per run measured
    write_json(path, everything)
    print(
        format_table(
            [{"kind": k, **v} for k, v in before["by_kind"].items()], ["kind", "n", "p50_ms", "p99_ms"]
        )
    )


if __name__ == "__main__":
    main()
