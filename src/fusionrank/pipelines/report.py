"""The run report: ``metrics.json`` is written by the run; this writes ``report.md``,
``report.html`` and the PNG plots (metrics by model, NDCG@K, warm vs cold users,
feature importance), and the comparison table printed at the end of ``fusionrank run``."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fusionrank.columns import TRAIN, USER_IDX
from fusionrank.evaluation.table import format_table
from fusionrank.io import atomic_path, read_json

if TYPE_CHECKING:
    from fusionrank.data.splits import Split
    from fusionrank.pipelines.config import RunConfig
    from fusionrank.pipelines.run import RunOutput

PEERS_DIR = Path("benchmarks/results")
HISTORY_BUCKETS = ((0, 20, "<=20"), (21, 50, "21-50"), (51, 150, "51-150"), (151, 10**9, ">150"))

PROTOCOL = """\
- Every single model is fitted on **train**; neural models stop early on **valid** NDCG@10.
- Ranker labels are the **valid** interactions. Label-stage candidates and features come from
  the train-fitted models, with train items excluded.
- The ranker stops early on a held-out share of those valid users.
- At test time the same models, the same features (train history) and the same ranker score
  candidates with train and valid items excluded. Test interactions are read only by the
  evaluator. SASRec alone uses valid items as history at test time, as its own evaluation does.
- Every row ranks all items (full ranking). For the ranker, items outside its candidates
  rank last."""


def peer_rows(peers_dir: Path = PEERS_DIR) -> list[dict[str, Any]]:
    """RecBole's ml-100k figures from the committed peer tables (identical split rows)."""
    tables = (
        ("collab_vs_peers.json", lambda r: str(r.get("system", "")).startswith("RecBole")),
        (
            "recbole_calibration.json",
            lambda r: r.get("system") == "RecBole" and "identical" in str(r.get("split", "")),
        ),
    )
    rows = []
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


def summary_rows(metrics: dict[str, Any], peers_dir: Path = PEERS_DIR) -> list[dict[str, Any]]:
    """The printed table: each single model, the ranker, and RecBole's figures."""
    models = metrics["models"]
    singles = {k: v for k, v in models.items() if k != "ltr"}
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
    for r in peer_rows(peers_dir):
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
    """Mean NDCG@10 per model and training-history bucket of the user."""
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


def _plots(output: RunOutput, config: RunConfig, history: np.ndarray) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = output.folder / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    models = output.metrics["models"]
    names = list(models)
    files = {}

    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(names))
    for j, metric in enumerate(("ndcg@10", "recall@10")):
        ax.bar(x + (j - 0.5) * 0.4, [models[n]["metrics"][metric] for n in names], 0.4, label=metric)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_title("Test metrics by model")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "metrics_by_model.png", dpi=110)
    plt.close(fig)
    files["metrics by model"] = "plots/metrics_by_model.png"

    fig, ax = plt.subplots(figsize=(7, 4))
    for n in names:
        ks = sorted(int(k.split("@")[1]) for k in models[n]["metrics"] if k.startswith("ndcg@"))
        ax.plot(ks, [models[n]["metrics"][f"ndcg@{k}"] for k in ks], marker="o", label=n)
    ax.set_xlabel("K")
    ax.set_ylabel("NDCG@K")
    ax.set_title("NDCG@K")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "ndcg_at_k.png", dpi=110)
    plt.close(fig)
    files["NDCG@K"] = "plots/ndcg_at_k.png"

    wc = warm_cold(output.per_user, history)
    if len(wc):
        table = wc.pivot(index="history", columns="model", values="ndcg@10")
        table = table.reindex([b[2] for b in HISTORY_BUCKETS if b[2] in table.index])
        fig, ax = plt.subplots(figsize=(8, 4))
        table.plot.bar(ax=ax, rot=0)
        ax.set_xlabel("training interactions of the user (cold -> warm)")
        ax.set_ylabel("NDCG@10")
        ax.set_title("Cold vs warm users")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(folder / "warm_vs_cold.png", dpi=110)
        plt.close(fig)
        files["warm vs cold users"] = "plots/warm_vs_cold.png"

    imp = output.importance.head(20).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.barh(imp["feature"], imp["gain"])
    ax.set_title("Ranker feature importance (gain)")
    fig.tight_layout()
    fig.savefig(folder / "feature_importance.png", dpi=110)
    plt.close(fig)
    files["feature importance"] = "plots/feature_importance.png"
    return files


def _bucket_table(wc: pd.DataFrame) -> pd.DataFrame:
    """Models as columns, history buckets as rows in cold-to-warm order, with user counts."""
    order = [b[2] for b in HISTORY_BUCKETS]
    table = wc.pivot(index="history", columns="model", values="ndcg@10")
    users = wc.drop_duplicates("history").set_index("history")["users"]
    table.insert(0, "users", users)
    return table.reindex([o for o in order if o in table.index]).reset_index()


def _md_table(frame: pd.DataFrame) -> str:
    return format_table(frame.to_dict("records"), list(frame.columns), markdown=True)


def write_report(output: RunOutput, config: RunConfig, split: Split, peers_dir: Path = PEERS_DIR) -> None:
    history = np.diff(split.matrix(TRAIN).indptr)
    plots = _plots(output, config, history)
    summary = pd.DataFrame(summary_rows(output.metrics, peers_dir))
    recall = pd.DataFrame(output.recall).T.reset_index(names="stage")
    ablation = pd.DataFrame(output.ablation)
    if len(ablation):
        full = ablation.loc[0, "ndcg@10"]
        ablation["change"] = ablation["ndcg@10"] - full
    wc = warm_cold(output.per_user, history)
    sections = [
        ("Results (test)", _md_table(summary)),
        ("Protocol", PROTOCOL),
        (
            f"Candidate recall@{config.retrieval.n} per source (share of positives that reach the ranker)",
            _md_table(recall),
        ),
        (
            "Ablation (ranker refitted without each group / source; test NDCG@10)",
            _md_table(ablation) if len(ablation) else "Ablation off in this config.",
        ),
        ("Feature importance (gain, top 20)", _md_table(output.importance.head(20))),
        (
            "Cold vs warm users (test NDCG@10 by training-history size)",
            _md_table(_bucket_table(wc)) if len(wc) else "",
        ),
    ]
    split_name = f"{config.split.kind} seed {config.split.seed}"
    title = f"fusionrank run `{config.name}`: {config.dataset}, split {split_name}"
    md = [f"# {title}", ""]
    for head, body in sections:
        md += [f"## {head}", "", body, ""]
    md += ["## Plots", ""] + [f"![{k}]({v})" for k, v in plots.items()] + [""]
    with atomic_path(output.folder / "report.md") as tmp:
        tmp.write_text("\n".join(md))
    parts = [f"<h1>{html.escape(title)}</h1>"]
    frames = {
        "Results (test)": summary,
        "Candidate recall": recall,
        "Ablation": ablation,
        "Feature importance": output.importance.head(20),
    }
    for head, frame in frames.items():
        parts.append(f"<h2>{html.escape(head)}</h2>")
        parts.append(
            frame.to_html(index=False, float_format=lambda v: f"{v:.4f}") if len(frame) else "<p>none</p>"
        )
        if head == "Results (test)":
            items = "".join(
                f"<li>{html.escape(line[2:])}</li>" for line in PROTOCOL.replace("\n  ", " ").splitlines()
            )
            parts.append(f"<h2>Protocol</h2><ul>{items}</ul>")
    parts.append("<h2>Plots</h2>")
    parts += [
        f'<figure><img src="{v}" alt="{html.escape(k)}"><figcaption>{html.escape(k)}</figcaption></figure>'
        for k, v in plots.items()
    ]
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:60em;margin:auto}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}</style>"
        f"</head><body>{''.join(parts)}</body></html>"
    )
    with atomic_path(output.folder / "report.html") as tmp:
        tmp.write_text(page)


def print_summary(metrics: dict[str, Any], peers_dir: Path = PEERS_DIR) -> str:
    rows = summary_rows(metrics, peers_dir)
    return format_table(rows, list(rows[0]))
