"""Memory of the batch embedding engine against catalogue size: 100k and 1M rows.

Each size embeds a synthetic Parquet catalogue (the synthetic generator's titles and
descriptions) with ``fr.embed`` in a fresh process and records that process's peak RSS
(VmHWM, from ``wait4``) and items/s. The model is a 2-layer BERT (hidden 32, MiniLM's
tokenizer) built from its config and loaded through the same ``from_pretrained`` path as
a real checkpoint, so that a million rows take minutes, not hours, on two cores: the
figure under test is the engine's memory, which must not grow with the rows.

    .venv/bin/python benchmarks/embed_memory.py     # -> benchmarks/results/embed_memory.{json,md}
    .venv/bin/python benchmarks/embed_memory.py --sizes 2000 20000 --out /tmp/x   # a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def catalogue(path: Path, rows: int, seed: int = 0) -> Path:
    """``rows`` items with a title and a short description from a fixed vocabulary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{k}" for k in range(5000)])
    writer = None
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        words = vocab[rng.integers(0, len(vocab), size=(n, 12))]
        table = pa.table(
            {
                "item_id": [f"i{k}" for k in range(start, start + n)],
                "title": [" ".join(w[:3]) for w in words],
                "description": [" ".join(w[3:]) for w in words],
            }
        )
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return path


CHILD = """
import sys, time, fusionrank as fr
t0 = time.perf_counter()
v = fr.embed(
    sys.argv[1], sys.argv[2], encoder="text", model=sys.argv[3], template="{title}. {description}", quiet=True
)
print(v.rows, time.perf_counter() - t0)
"""


def measure(rows: int, work: Path, model: Path) -> dict:
    path = catalogue(work / f"catalogue-{rows}.parquet", rows)
    out = work / f"vectors-{rows}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(out), str(model)], stdout=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    assert proc.stdout is not None
    text = proc.stdout.read().split()
    if os.waitstatus_to_exitcode(status) != 0 or not text:
        raise SystemExit(f"embedding {rows} rows failed")
    done, seconds = int(text[0]), float(text[1])
    row = {"rows": rows, "embedded": done, "wall_s": wall, "embed_s": seconds, "items_per_s": done / seconds}
    row["peak_rss_mb"] = usage.ru_maxrss / 1024
    print(
        f"{rows:,} rows: {row['items_per_s']:.0f} items/s, peak RSS {row['peak_rss_mb']:.0f} MB", flush=True
    )
    return row


def main() -> None:
    from fusionrank.encoders.tiny import save_tiny_bert

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fusionrank-embed-memory-"))
    model = save_tiny_bert(work / "tiny-bert")
    rows = [measure(n, work, model) for n in args.sizes]
    ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    result = {
        "command": "python benchmarks/embed_memory.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "model": "2-layer BERT, hidden 32, from config (MiniLM tokenizer)",
        "sizes": rows,
        "rss_ratio_largest_to_smallest": ratio,
    }
    lines = [
        "# Batch embedding memory against catalogue size",
        "",
        f"`{result['command']}` on {result['machine']}; {result['model']}; each size in a fresh "
        "process, peak RSS = that process's VmHWM.",
        "",
        "| rows | items/s | seconds | peak RSS MB |",
        "|---|---|---|---|",
        *[
            f"| {r['rows']:,} | {r['items_per_s']:.0f} | {r['embed_s']:.0f} | {r['peak_rss_mb']:.0f} |"
            for r in rows
        ],
        "",
        f"Peak RSS at {rows[-1]['rows']:,} rows is {ratio:.2f}× the peak at {rows[0]['rows']:,} rows.",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "embed_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "embed_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
