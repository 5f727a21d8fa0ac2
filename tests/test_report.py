"""The run report (``report.md``, ``report.html``, plots, the printed table) on a synthetic
run: no files read from the working directory, proper HTML, readable numbers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from fusionrank.pipelines.stages.report import (
    HISTORY_BUCKETS,
    PROTOCOL,
    _markdown_html,
    peer_rows,
    print_summary,
    summary_rows,
    warm_cold,
    write_report,
)

HISTORY = [5, 30, 100, 200, 12, 60]  # training interactions of users 0..5: every bucket
N_ITEMS = 250
PEERS = {"rows": [{"system": "RecBole 1.2.1", "model": "BPR", "ndcg@10": 0.28, "recall@10": 0.2}]}


def _metrics(ndcg10: float) -> dict[str, float]:
    return {
        "ndcg@5": ndcg10 * 0.9,
        "ndcg@10": ndcg10,
        "ndcg@20": ndcg10 * 1.1,
        "recall@10": ndcg10 * 0.8,
        "mrr@10": ndcg10 * 1.5,
    }


def _run(folder: Path) -> SimpleNamespace:
    """A finished run as the report sees it: three single models and the ranker ``ltr``."""
    scores = {"pop": 0.11, "ease": 0.31, "bpr<&>": 0.29, "ltr": 0.34}
    rng = np.random.default_rng(0)
    per_user = {
        name: pd.DataFrame(
            {"user_idx": np.arange(len(HISTORY)), "ndcg@10": rng.uniform(0, 2 * s, len(HISTORY))}
        )
        for name, s in scores.items()
    }
    importance = pd.DataFrame(
        {
            "feature": ["score_ease", "rank_<bpr>", "z_pop"],
            "gain": [812.25, 301.5, 12.125],
            "splits": [40.0, 22.0, 3.0],  # mean over boosters: floats with whole values
        }
    )
    ablation = [
        {
            "variant": "all features",
            "dropped": "",
            "n_features": 9,
            "stop ndcg@10 (valid)": 0.36,
            "ndcg@10": 0.34,
        },
        {
            "variant": "without group sources",
            "dropped": "sources",
            "n_features": 3,
            "stop ndcg@10 (valid)": 0.30,
            "ndcg@10": 0.31,
        },
    ]
    recall = {
        "valid": {"ease": 0.52, "bpr<&>": 0.48, "union": 0.61},
        "test": {"ease": 0.50, "bpr<&>": 0.47, "union": 0.60},
    }
    metrics = {
        "dataset": "ml-100k",
        "split": {"kind": "ratio", "seed": 2020, "ratios": [0.8, 0.1, 0.1]},
        "models": {name: {"model": name, "metrics": _metrics(s)} for name, s in scores.items()},
        "candidate_recall": recall,
        "ablation": ablation,
        "time_s": 1.5,
    }
    folder.mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(
        folder=folder,
        metrics=metrics,
        per_user=per_user,
        importance=importance,
        ablation=ablation,
        recall=recall,
    )


def _split() -> SimpleNamespace:
    """A split stub: ``matrix("train")`` is a user x item CSR with ``HISTORY`` items per user."""
    rows = np.repeat(np.arange(len(HISTORY)), HISTORY)
    cols = np.concatenate([np.arange(h) for h in HISTORY])
    train = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(HISTORY), N_ITEMS))

    def matrix(part: str) -> sp.csr_matrix:
        assert part == "train"
        return train

    return SimpleNamespace(matrix=matrix)


# Only the two fields the report may read: any other access fails the test.
CONFIG = SimpleNamespace(name="demo <run>", retrieval=SimpleNamespace(n=50))


@pytest.fixture
def peers(tmp_path: Path) -> Path:
    folder = tmp_path / "peers"
    folder.mkdir()
    (folder / "collab_vs_peers.json").write_text(json.dumps(PEERS))
    return folder


class _Page(HTMLParser):
    """Tables (header and cells per row), images and the title of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.captions: list[str] = []
        self.title = ""
        self._cell: list[str] | None = None
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        elif tag in ("title", "figcaption"):
            self._in, self._cell = tag, []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == self._in and self._cell is not None:
            text = "".join(self._cell).strip()
            if tag == "title":
                self.title = text
            else:
                self.captions.append(text)
            self._in, self._cell = None, None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def _column(tables: list[list[list[str]]], name: str) -> list[str]:
    """The cells under header ``name`` in every table that has that column."""
    cells = []
    for table in tables:
        if name in table[0]:
            j = table[0].index(name)
            cells += [row[j] for row in table[1:]]
    assert cells, f"no column {name!r}"
    return cells


def _md_tables(md: str) -> list[list[list[str]]]:
    """The Markdown tables of a report: header and cells per row (rule lines dropped)."""
    tables: list[list[list[str]]] = []
    previous = ""
    for line in md.splitlines():
        if line.startswith("|") and not line.startswith("|-"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append([c.strip() for c in line.strip().strip("|").split("|")])
        previous = line
    return tables


def _report(tmp_path: Path, peers_dir: Path | None = None) -> tuple[Path, str, str]:
    folder = tmp_path / "runs" / "demo"
    write_report(_run(folder), CONFIG, _split(), peers_dir=peers_dir)
    return (
        folder,
        (folder / "report.md").read_text(encoding="utf-8"),
        (folder / "report.html").read_text(encoding="utf-8"),
    )


def test_report_html_is_a_proper_page(tmp_path):
    folder, md, page = _report(tmp_path)
    parsed = _parse(page)
    assert page.startswith("<!doctype html>")
    assert '<html lang="en">' in page and '<meta charset="utf-8">' in page
    assert parsed.title == "fusionrank run demo <run>: ml-100k, split ratio seed 2020"
    # Markdown converted, nothing raw: bold, code, no NaN
    assert "**" not in page and "NaN" not in page and ">nan<" not in page
    assert "<strong>train</strong>" in page and "<strong>valid</strong>" in page
    assert "<code>demo &lt;run&gt;</code>" in page
    # every section of the Markdown report is in the page, in the same order
    heads = re.findall(r"^## (.+)$", md, flags=re.M)
    html_heads = re.findall(r"<h2>(.+?)</h2>", page)
    assert [h.replace("<", "&lt;").replace(">", "&gt;") for h in heads] == html_heads
    assert len(parsed.tables) == 5  # results, recall, ablation, importance, cold vs warm
    # integer columns print as integers; floats with 4 decimals; ratios with 3 and ×
    for name in ("users", "n_features", "splits"):
        assert all(re.fullmatch(r"\d+", c) for c in _column(parsed.tables, name)), name
    assert _column(parsed.tables, "splits") == ["40", "22", "3"]
    assert _column(parsed.tables, "ndcg@10")[:4] == ["0.1100", "0.3100", "0.2900", "0.3400"]
    assert _column(parsed.tables, "vs ease") == ["0.355×", "1.000×", "0.935×", "1.097×"]
    # numbers are right-aligned by class, text is not
    assert '<td class="num">0.3400</td>' in page and "<td>ltr</td>" in page
    # each plot is referenced, exists and has a caption
    assert len(parsed.images) == 4 and len(parsed.captions) == 4
    for src in parsed.images:
        assert (folder / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src


def test_everything_inserted_into_html_is_escaped(tmp_path):
    _, _, page = _report(tmp_path)
    for raw in ("<run>", "bpr<&>", "<bpr>", "<=20"):
        assert raw not in page
    for escaped in ("bpr&lt;&amp;&gt;", "rank_&lt;bpr&gt;", "&lt;=20", "&gt;150"):
        assert escaped in page


def test_report_md_keeps_its_layout_with_dashes_and_integers(tmp_path, peers):
    folder, md, _ = _report(tmp_path, peers_dir=peers)
    assert md.startswith("# fusionrank run `demo <run>`: ml-100k, split ratio seed 2020\n")
    assert "## Protocol\n\n" + PROTOCOL in md  # Markdown stays Markdown
    tables = _md_tables(md)
    assert len(tables) == 5
    assert not any(cell.lower() == "nan" for table in tables for row in table for cell in row)
    assert tables[0][-1] == ["RecBole BPR", "0.2800", "0.2000", "-", "0.9032"]
    assert _column(tables, "n_features") == ["9", "3"]
    assert _column(tables, "splits") == ["40", "22", "3"]
    assert _column(tables, "users") == ["2", "1", "2", "1"]
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (folder / target).exists(), target


def test_no_peer_rows_without_a_folder_even_if_the_working_directory_has_one(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    (cwd / "benchmarks" / "results").mkdir(parents=True)
    (cwd / "benchmarks" / "results" / "collab_vs_peers.json").write_text(json.dumps(PEERS))
    monkeypatch.chdir(cwd)
    metrics = _run(tmp_path / "m").metrics
    assert not any(r["model"].startswith("RecBole") for r in summary_rows(metrics))
    assert "RecBole" not in print_summary(metrics)
    _, md, page = _report(tmp_path)
    assert "RecBole" not in md and "RecBole" not in page


def test_peer_rows_come_from_the_named_folder(tmp_path, peers):
    assert peer_rows(peers) == [
        {"model": "RecBole BPR", "ndcg@10": 0.28, "recall@10": 0.2, "source": "collab_vs_peers.json"}
    ]
    metrics = _run(tmp_path / "m").metrics
    rows = summary_rows(metrics, peers)
    assert [r["model"] for r in rows] == ["pop", "ease", "bpr<&>", "ltr", "RecBole BPR"]
    for other in ({"kind": "temporal-ratio", "seed": 2020}, {"kind": "ratio", "seed": 7}):
        # the peer tables were measured on ml-100k's ratio split, seed 2020: not beside another
        elsewhere = {**metrics, "split": other}
        assert not any(r["model"].startswith("RecBole") for r in summary_rows(elsewhere, peers))
    assert rows[-1]["vs ease"] == pytest.approx(0.28 / 0.31)
    text = print_summary(metrics, peers)
    assert "RecBole BPR" in text and "nan" not in text
    _, _, page = _report(tmp_path, peers_dir=peers)
    results = _parse(page).tables[0]
    assert results[-1] == ["RecBole BPR", "0.2800", "0.2000", "\u2013", "0.903×"]
    assert '<td class="num missing">\u2013</td>' in page


def test_an_empty_peer_folder_gives_no_rows(tmp_path):
    (tmp_path / "empty").mkdir()
    assert peer_rows(tmp_path / "empty") == []


def test_a_missing_peer_folder_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "no" / "such" / "peers"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        peer_rows(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        summary_rows(_run(tmp_path / "m").metrics, missing)
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        _report(tmp_path, peers_dir=missing)


def test_warm_cold_buckets_users_by_training_history():
    per_user = {"m": pd.DataFrame({"user_idx": [0, 1, 2, 3, 4], "ndcg@10": [0.1, 0.2, 0.3, 0.4, 0.5]})}
    wc = warm_cold(per_user, np.array(HISTORY))
    assert list(wc["history"]) == [b[2] for b in HISTORY_BUCKETS]
    assert list(wc["users"]) == [2, 1, 1, 1]
    assert wc["ndcg@10"].iloc[0] == pytest.approx(0.3)


def test_markdown_subset_converter_escapes_and_keeps_code_literal():
    out = _markdown_html("- a **b** <c>\n  continued `x**y**<z>`\n- two\n\nplain & para")
    assert out == (
        "<ul><li>a <strong>b</strong> &lt;c&gt; continued <code>x**y**&lt;z&gt;</code></li>"
        "<li>two</li></ul>\n<p>plain &amp; para</p>"
    )


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not binary:
        pytest.skip("no Chromium binary on PATH")
    return binary


def _headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.mark.slow
def test_report_html_renders_in_headless_chromium(tmp_path, peers):
    from PIL import Image

    binary = _chromium()
    folder, _, _ = _report(tmp_path, peers_dir=peers)
    url = (folder / "report.html").as_uri()
    shot = tmp_path / "report.png"
    _headless(
        binary,
        tmp_path / "profile",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        "--window-size=1200,3000",
        url,
    )
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(shot) as image:
        assert image.size == (1200, 3000)
        low, high = image.convert("L").getextrema()
    assert low < high, "blank screenshot"
    dom = _headless(binary, tmp_path / "profile", "--dump-dom", url).stdout
    assert "<table>" in dom and "<strong>train</strong>" in dom and "<figcaption>" in dom
    assert "**" not in dom and "NaN" not in dom
