"""The run report: ``metrics.json`` is written by the run; this writes ``report.md``,
``report.html`` and the PNG plots (metrics by model, NDCG@K, warm vs cold users,
feature importance), and the comparison table printed at the end of ``fusionrank run``.

Nothing here reads files relative to the working directory: the RecBole peer figures are
read only from a folder the caller names (``peers_dir``), so a report does not depend on
where the user happens to stand."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fusionrank.columns import TRAIN, USER_IDX
from fusionrank.errors import MissingInputError
from fusionrank.evaluation.table import format_table
from fusionrank.io import atomic_path, read_json

HISTORY_BUCKETS = ((0, 20, "<=20"), (21, 50, "21-50"), (51, 150, "51-150"), (151, 10**9, ">150"))

PROTOCOL = """\
- Every single model is fitted on **train**; models with a training loop stop early on **valid**.
- Ranker labels are the **valid** interactions. Label-stage candidates and features come from
  the train-fitted models, with train items excluded.
- The ranker stops early on a held-out share of those valid users.
- At test time the same models, the same features (train history) and the same ranker score
  candidates with train and valid items excluded. Test interactions are read only by the
  evaluator. SASRec alone reads valid items as history at test time, as its own evaluation does.
- Every row ranks all items (full ranking). For the ranker, items outside its candidates
  rank last."""

STACKED = """- **Stacked labels** (`protocol.labels: stacked`): each user's training interactions are also
  cut into folds; for each fold the models are refitted on the other folds (with the epochs
  found on valid) and the held-out fold labels their candidates. The ranker learns from the
  query groups of every fold and of valid, and stops early on a held-out share of the valid
  users (their fold groups stay out of that fit)."""

FOLDS_WITH_VALID = """- **Fold models see valid** (`protocol.fold_fit: train+valid`): each fold's models are
  fitted on the other folds and on valid, as much data as the valid table's models see;
  valid's interactions are history in the fold tables, never a label there."""

REFIT = """- **Refit before test** (`protocol.refit`): every model is refitted on train + valid with
  the settings and epochs found on valid, as it would be deployed; the test features (history
  train + valid) and every single model's test metrics come from the refits."""


def protocol_text(name: str) -> str:
    """The report's protocol section for the run's protocol (``valid``, ``stacked-5+refit`` ...)."""
    parts = [PROTOCOL]
    if name.startswith("stacked"):
        parts.append(STACKED)
        if "+valid" in name:
            parts.append(FOLDS_WITH_VALID)
    if name.endswith("+refit"):
        parts.append(REFIT)
    return "\n".join([*parts, f"- This run's protocol: `{name}`."])


LTR = "ltr"
"""The ranker's name in ``metrics["models"]``; every other entry is a single model."""

COUNT_COLUMNS = frozenset({"users", "n_features", "trees", "splits", "best_iteration"})
"""Columns that hold counts: printed as integers when their values are whole, even where a
mean over boosters (``splits``) or a missing cell made pandas store them as floats."""

PLOT_CAPTIONS = {
    "metrics by model": "Test NDCG@10 and Recall@10 of each model.",
    "NDCG@K": "Test NDCG at each cut-off K, per model.",
    "warm vs cold users": "Test NDCG@10 by the user's number of training interactions, cold to warm.",
    "feature importance": "The ranker's 20 features with the largest total gain.",
}
"""Captions under the plots in ``report.html`` (the Markdown report uses the short names)."""

MISSING_MD = "-"
MISSING_HTML = "\u2013"  # en dash


# --- what the report reads ------------------------------------------------------------------
class _Retrieval(Protocol):
    """The candidate-retrieval settings; the report shows their candidate count ``n``."""

    @property
    def n(self) -> int: ...


class ReportConfig(Protocol):
    """The only parts of the run config the report reads: its name and the candidate count.
    (The dataset and split come from ``metrics.json``, so the config's shape may change.)"""

    @property
    def name(self) -> str: ...

    @property
    def retrieval(self) -> _Retrieval: ...


class ReportOutput(Protocol):
    """What a finished run hands to the report (``fusionrank.pipelines.run.RunOutput``)."""

    @property
    def folder(self) -> Path: ...

    @property
    def metrics(self) -> dict[str, Any]: ...

    @property
    def per_user(self) -> dict[str, pd.DataFrame]: ...

    @property
    def importance(self) -> pd.DataFrame: ...

    @property
    def ablation(self) -> list[dict[str, Any]]: ...

    @property
    def recall(self) -> dict[str, dict[str, float]]: ...


class ReportSplit(Protocol):
    """The split, read only for each user's number of training interactions."""

    def matrix(self, part: str) -> sp.csr_matrix: ...


# --- the tables -----------------------------------------------------------------------------
def peer_rows(peers_dir: Path) -> list[dict[str, Any]]:
    """RecBole's ml-100k figures from the committed peer tables in ``peers_dir`` (rows on the
    identical split only), so the printed table can set this run beside them.

    A table file absent from the folder contributes no rows; the folder itself must exist,
    because a caller who names one expects its figures and a silent empty result would hide
    a wrong path."""
    peers_dir = Path(peers_dir)
    if not peers_dir.is_dir():
        raise MissingInputError(f"peer results folder not found: {peers_dir}")
    tables: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
        ("collab_vs_peers.json", lambda r: str(r.get("system", "")).startswith("RecBole")),
        (
            "recbole_calibration.json",
            lambda r: r.get("system") == "RecBole" and "identical" in str(r.get("split", "")),
        ),
    )
    rows: list[dict[str, Any]] = []
    for name, wanted in tables:
        path = peers_dir / name
        if not path.exists():
            continue
        for r in filter(wanted, read_json(path)["rows"]):
            rows.append(
                {
                    "model": f"RecBole {r['model']}",
                    "ndcg@10": r["ndcg@10"],
                    "recall@10": r["recall@10"],
                    "source": name,
                }
            )
    return rows


PEER_SPLIT = {"dataset": "ml-100k", "kind": "ratio", "seed": 2020}
"""The split the committed peer tables were measured on (ml-100k, per-user random 8:1:1,
seed 2020): their rows are set beside a run only on that split."""


def peers_comparable(metrics: dict[str, Any]) -> bool:
    """Whether the run's dataset and split are the peer tables' (:data:`PEER_SPLIT`)."""
    split = metrics.get("split") or {}
    return (
        metrics.get("dataset") == PEER_SPLIT["dataset"]
        and split.get("kind") == PEER_SPLIT["kind"]
        and split.get("seed") == PEER_SPLIT["seed"]
        and list(split.get("ratios", [0.8, 0.1, 0.1])) == [0.8, 0.1, 0.1]
    )


def summary_rows(metrics: dict[str, Any], peers_dir: Path | None = None) -> list[dict[str, Any]]:
    """The printed table: each single model, the ranker and, when ``peers_dir`` is given
    and the run is on the peers' split (:func:`peers_comparable`), RecBole's figures;
    ``vs <best>`` is NDCG@10 relative to the best single model."""
    models = metrics["models"]
    singles = {k: v for k, v in models.items() if k != LTR}
    best = max(singles, key=lambda k: singles[k]["metrics"]["ndcg@10"])
    best_ndcg = singles[best]["metrics"]["ndcg@10"]
    rows = []
    for name, m in models.items():
        mm = m["metrics"]
        rows.append(
            {
                "model": name,
                "ndcg@10": mm["ndcg@10"],
                "recall@10": mm["recall@10"],
                "mrr@10": mm.get("mrr@10", float("nan")),
                f"vs {best}": mm["ndcg@10"] / best_ndcg,
            }
        )
    for r in peer_rows(peers_dir) if peers_dir is not None and peers_comparable(metrics) else []:
        rows.append(
            {
                "model": r["model"],
                "ndcg@10": r["ndcg@10"],
                "recall@10": r["recall@10"],
                "mrr@10": float("nan"),
                f"vs {best}": r["ndcg@10"] / best_ndcg,
            }
        )
    return rows


def warm_cold(per_user: dict[str, pd.DataFrame], history: np.ndarray) -> pd.DataFrame:
    """Mean NDCG@10 per model and training-history bucket of the user (how each model does
    for cold and for warm users)."""
    out = []
    for name, frame in per_user.items():
        h = history[frame[USER_IDX].to_numpy()]
        for lo, hi, label in HISTORY_BUCKETS:
            sel = (h >= lo) & (h <= hi)
            if sel.any():
                out.append(
                    {
                        "model": name,
                        "history": label,
                        "users": int(sel.sum()),
                        "ndcg@10": float(frame.loc[sel, "ndcg@10"].mean()),
                    }
                )
    return pd.DataFrame(out)


def _bucket_table(wc: pd.DataFrame) -> pd.DataFrame:
    """Models as columns, history buckets as rows in cold-to-warm order, with user counts."""
    order = [b[2] for b in HISTORY_BUCKETS]
    table = wc.pivot(index="history", columns="model", values="ndcg@10")
    users = wc.drop_duplicates("history").set_index("history")["users"]
    table.insert(0, "users", users)
    return table.reindex([o for o in order if o in table.index]).reset_index()


# --- cell formatting ------------------------------------------------------------------------
def _is_missing(value: object) -> bool:
    """None, NaN and pandas' NA/NaT: the cells a peer table or a pivot leaves empty."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))  # type: ignore[call-overload]  # the stubs take no plain object
    except (TypeError, ValueError):  # list-like cells are never "missing"
        return False


def _column_kind(name: str, values: pd.Series) -> str:
    """``ratio`` (``vs ...`` columns), ``int`` (integer dtype, or a count column whose values
    are all whole), ``float`` (other numbers) or ``text``."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "text"
    if name.startswith("vs "):
        return "ratio"
    if pd.api.types.is_integer_dtype(values):
        return "int"
    finite = values.dropna().to_numpy(dtype=float)
    if name in COUNT_COLUMNS and np.all(np.isfinite(finite)) and np.all(finite == np.round(finite)):
        return "int"
    return "float"


def _format_cell(value: Any, kind: str, html_cell: bool) -> str:
    """One cell as text: missing as a dash (en dash in HTML), counts as integers, numbers with
    4 decimals, ratios with 3 decimals and ``×`` in HTML (4 decimals in Markdown, as before)."""
    if _is_missing(value):
        return MISSING_HTML if html_cell else MISSING_MD
    if kind == "int":
        return str(int(round(float(value))))
    if kind == "ratio" and html_cell:
        return f"{float(value):.3f}\u00d7"
    if kind in ("ratio", "float") or isinstance(value, float | np.floating):
        return f"{float(value):.4f}"
    return str(value)


def _formatted(frame: pd.DataFrame, html_cells: bool) -> tuple[list[str], list[str], list[list[str]]]:
    """Column names, column kinds and the formatted cells, row by row."""
    columns = [str(c) for c in frame.columns]
    kinds = [_column_kind(name, frame.iloc[:, j]) for j, name in enumerate(columns)]
    cells = [
        [_format_cell(v, kinds[j], html_cells) for j, v in enumerate(row)]
        for row in frame.itertuples(index=False, name=None)
    ]
    return columns, kinds, cells


def _md_table(frame: pd.DataFrame) -> str:
    """A Markdown table of ``frame`` (missing cells ``-``, counts as integers)."""
    columns, _, cells = _formatted(frame, html_cells=False)
    return format_table([dict(zip(columns, row)) for row in cells], columns, markdown=True)


def _text_table(rows: Sequence[dict[str, Any]]) -> str:
    """The plain terminal table of ``rows``, formatted as the Markdown one."""
    columns, _, cells = _formatted(pd.DataFrame(list(rows)), html_cells=False)
    return format_table([dict(zip(columns, row)) for row in cells], columns)


# --- HTML -----------------------------------------------------------------------------------
_CODE = re.compile(r"(`[^`\n]+`)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")

_CSS = """\
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif;
  color: #1f2328; background: #fff; max-width: 64rem; margin: 2rem auto; padding: 0 1.25rem; }
h1 { font-size: 1.55rem; line-height: 1.3; border-bottom: 1px solid #d0d7de; padding-bottom: .4rem; }
h2 { font-size: 1.2rem; margin: 2.2rem 0 .6rem; }
ul { padding-left: 1.4rem; } li { margin: .25rem 0; }
code { font: .9em ui-monospace, "DejaVu Sans Mono", Menlo, monospace; background: #f6f8fa;
  padding: .05em .3em; border-radius: 4px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: .9rem; margin: .4rem 0 1rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .7rem; white-space: nowrap; }
th { background: #f6f8fa; font-weight: 600; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.missing { color: #8c959f; }
tbody tr:nth-child(even) { background: #fbfcfd; }
figure { margin: 1rem 0 2rem; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #d0d7de; }
figcaption { color: #57606a; font-size: .9rem; margin-top: .35rem; }
"""


def _inline_html(text: str) -> str:
    """The inline Markdown the report uses, as escaped HTML: ``**bold**`` and `` `code` ``."""
    parts = []
    for piece in _CODE.split(text):
        if len(piece) > 2 and piece.startswith("`") and piece.endswith("`"):
            parts.append(f"<code>{html.escape(piece[1:-1])}</code>")
        else:
            parts.append(_BOLD.sub(r"<strong>\1</strong>", html.escape(piece)))
    return "".join(parts)


def _markdown_html(text: str) -> str:
    """The small Markdown subset of the report's prose as HTML: paragraphs and ``- `` bullet
    lists (indented lines continue an item), with inline bold and code."""
    blocks: list[str] = []
    items: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if items:
            blocks.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in items) + "</ul>")
            items.clear()
        if para:
            blocks.append(f"<p>{_inline_html(' '.join(para))}</p>")
            para.clear()

    for line in text.splitlines():
        if not line.strip():
            flush()
        elif line.startswith("- "):
            if para:
                flush()
            items.append(line[2:].strip())
        elif items and line[:1].isspace():
            items[-1] += " " + line.strip()
        else:
            if items:
                flush()
            para.append(line.strip())
    flush()
    return "\n".join(blocks)


def _html_table(frame: pd.DataFrame) -> str:
    """``frame`` as an escaped HTML table: numbers right-aligned, missing cells an en dash."""
    columns, kinds, cells = _formatted(frame, html_cells=True)
    numeric = [k != "text" for k in kinds]

    def cls(j: int, value: str | None = None) -> str:
        names = (["num"] if numeric[j] else []) + (["missing"] if value == MISSING_HTML else [])
        return f' class="{" ".join(names)}"' if names else ""

    head = "".join(f'<th scope="col"{cls(j)}>{html.escape(c)}</th>' for j, c in enumerate(columns))
    body = "\n".join(
        "<tr>" + "".join(f"<td{cls(j, v)}>{html.escape(v)}</td>" for j, v in enumerate(row)) + "</tr>"
        for row in cells
    )
    return (
        f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table></div>"
    )


# --- the report -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Section:
    """One report section: a heading and either a table or Markdown prose."""

    head: str
    table: pd.DataFrame | None = None
    text: str = ""
    """Shown when there is no table."""
    note: str = ""
    """Prose under the table."""

    def markdown(self) -> str:
        """The section body for ``report.md``."""
        body = _md_table(self.table) if self.table is not None else self.text
        return f"{body}\n\n{self.note}" if self.note else body

    def html(self) -> str:
        """The section body for ``report.html``, escaped."""
        body = _html_table(self.table) if self.table is not None else _markdown_html(self.text)
        return body + _markdown_html(self.note) if self.note else body


def _save(fig: Any, path: Path) -> None:
    """Write a figure as PNG under a temporary name, then rename it into place."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def _plots(output: ReportOutput, history: np.ndarray) -> dict[str, str]:
    """Draw the plots into ``<folder>/plots``; returns short name -> path relative to the folder.
    Uses matplotlib's object API (no pyplot), so the caller's backend (a notebook's inline
    one, say) is left as it was."""
    from matplotlib.figure import Figure

    folder = output.folder / "plots"
    models = output.metrics["models"]
    names = list(models)
    files: dict[str, str] = {}

    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    x = np.arange(len(names))
    for j, metric in enumerate(("ndcg@10", "recall@10")):
        ax.bar(x + (j - 0.5) * 0.4, [models[n]["metrics"][metric] for n in names], 0.4, label=metric)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_title("Test metrics by model")
    ax.legend()
    fig.tight_layout()
    _save(fig, folder / "metrics_by_model.png")
    files["metrics by model"] = "plots/metrics_by_model.png"

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for n in names:
        ks = sorted(int(k.split("@")[1]) for k in models[n]["metrics"] if k.startswith("ndcg@"))
        ax.plot(ks, [models[n]["metrics"][f"ndcg@{k}"] for k in ks], marker="o", label=n)
    ax.set_xlabel("K")
    ax.set_ylabel("NDCG@K")
    ax.set_title("NDCG@K")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, folder / "ndcg_at_k.png")
    files["NDCG@K"] = "plots/ndcg_at_k.png"

    wc = warm_cold(output.per_user, history)
    if len(wc):
        table = wc.pivot(index="history", columns="model", values="ndcg@10")
        table = table.reindex([b[2] for b in HISTORY_BUCKETS if b[2] in table.index])
        fig = Figure(figsize=(8, 4))
        ax = fig.subplots()
        table.plot.bar(ax=ax, rot=0)
        ax.set_xlabel("training interactions of the user (cold -> warm)")
        ax.set_ylabel("NDCG@10")
        ax.set_title("Cold vs warm users")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        _save(fig, folder / "warm_vs_cold.png")
        files["warm vs cold users"] = "plots/warm_vs_cold.png"

    imp = output.importance.head(20).iloc[::-1]
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    ax.barh(imp["feature"].astype(str), imp["gain"])
    ax.set_title("Ranker feature importance (gain)")
    fig.tight_layout()
    _save(fig, folder / "feature_importance.png")
    files["feature importance"] = "plots/feature_importance.png"
    return files


def _dataset_name(value: object) -> str:
    """The dataset's name from ``metrics["dataset"]`` (a name, or a mapping with ``name``)."""
    if isinstance(value, Mapping) and "name" in value:
        return str(value["name"])
    return str(value)


def _html_page(title: str, sections: list[_Section], plots: dict[str, str]) -> str:
    """The whole HTML document: the same sections as the Markdown report, then the plots."""
    body = [f"<h1>{_inline_html(title)}</h1>"]
    for s in sections:
        body.append(f"<section>\n<h2>{_inline_html(s.head)}</h2>\n{s.html()}\n</section>")
    figures = [
        f'<figure><img src="{html.escape(path)}" alt="{html.escape(name)}">'
        f"<figcaption>{html.escape(PLOT_CAPTIONS.get(name, name))}</figcaption></figure>"
        for name, path in plots.items()
    ]
    body.append("<section>\n<h2>Plots</h2>\n" + "\n".join(figures) + "\n</section>")
    plain_title = title.replace("`", "")
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(plain_title)}</title>\n<style>\n{_CSS}</style>\n</head>\n"
        "<body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )


def write_report(
    output: ReportOutput, config: ReportConfig, split: ReportSplit, peers_dir: Path | None = None
) -> None:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``output.folder``.

    The dataset and split in the title come from ``output.metrics`` (what the run recorded);
    of ``config`` only ``name`` and ``retrieval.n`` are read. RecBole rows join the results
    table only when ``peers_dir`` names a folder of peer tables (see :func:`peer_rows`)."""
    history = np.diff(split.matrix(TRAIN).indptr)
    plots = _plots(output, history)
    summary = pd.DataFrame(summary_rows(output.metrics, peers_dir))
    recall = pd.DataFrame(output.recall).T.reset_index(names="stage")
    pool = output.metrics.get("candidate_headroom", {})
    if pool:
        recall["headroom ndcg@10"] = [pool.get(stage) for stage in recall["stage"]]
    only = output.metrics.get("candidate_only", {}).get("test", {})
    ablation = pd.DataFrame(output.ablation)
    if len(ablation):
        full = ablation["ndcg@10"].loc[0]
        ablation["change"] = ablation["ndcg@10"] - full
    wc = warm_cold(output.per_user, history)
    sections = [
        _Section("Results (test)", table=summary),
        _Section("Protocol", text=protocol_text(output.metrics.get("protocol", "valid"))),
        _Section(
            f"Candidate recall@{config.retrieval.n} per source (share of positives that reach the ranker)",
            table=recall,
            note=(
                "Headroom: the NDCG@10 of a perfect reordering of the stage's candidates, the most any "
                "ranker of this pool can reach. Test candidates only one source retrieved: "
                + ", ".join(f"{s} {n:,}" for s, n in only.items())
                + "."
            )
            if only
            else "",
        ),
        *(
            [
                _Section(
                    f"Approximate index: recall@{config.retrieval.n} against exact search (sampled users)",
                    table=pd.DataFrame(
                        {"source": list(ann), f"recall@{config.retrieval.n}": list(ann.values())}
                    ),
                )
            ]
            if (ann := output.metrics.get("ann_recall"))
            else []
        ),
        _Section(
            "Ablation (ranker refitted without each group / source; test NDCG@10)",
            table=ablation if len(ablation) else None,
            text="Ablation off in this config.",
        ),
        _Section("Feature importance (gain, top 20)", table=output.importance.head(20)),
        _Section(
            "Cold vs warm users (test NDCG@10 by training-history size)",
            table=_bucket_table(wc) if len(wc) else None,
        ),
    ]
    run_split = output.metrics["split"]
    dataset = _dataset_name(output.metrics["dataset"])
    title = f"fusionrank run `{config.name}`: {dataset}, split {run_split['kind']} seed {run_split['seed']}"

    md = [f"# {title}", ""]
    for s in sections:
        md += [f"## {s.head}", "", s.markdown(), ""]
    md += ["## Plots", ""] + [f"![{k}]({v})" for k, v in plots.items()] + [""]
    with atomic_path(output.folder / "report.md") as tmp:
        tmp.write_text("\n".join(md), encoding="utf-8")
    with atomic_path(output.folder / "report.html") as tmp:
        tmp.write_text(_html_page(title, sections, plots), encoding="utf-8")


def print_summary(metrics: dict[str, Any], peers_dir: Path | None = None) -> str:
    """The results table for the terminal (missing cells ``-``); RecBole rows only when
    ``peers_dir`` names a folder of peer tables. Returns the text; the caller prints it."""
    return _text_table(summary_rows(metrics, peers_dir))
