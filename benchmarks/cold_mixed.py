"""Cold items ranked together with warm ones: is each content model's share of the top 10
the share cold items have in the truth?

The ``cold-items`` split of ``cold_start.py`` holds only the cold items' interactions in
test, so ranking every item (protocol b) cannot say whether cold and warm scores are
calibrated. Here the split also holds out 10% of each warm user's interactions for test
(``warm_test_ratio: 0.1``): a ranking of all items is scored against a truth holding both,
beside the share of its top-10 slots that cold items get and their share of that truth.
EASE (no content: cold items score 0) is the reference a content model must beat there.

    .venv/bin/python benchmarks/cold_mixed.py --seeds 2020,7

Writes ``benchmarks/results/cold_mixed.{json,md}``.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path
from typing import Any

import fusionrank as fr
from fusionrank.data.dataset import default_root
from fusionrank.evaluation.table import format_table
from fusionrank.io import write_json

RESULTS = Path(__file__).resolve().parent / "results"
WARM_TEST = 0.1
MODELS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("ease", "ease", "-", {}),
    ("ease-content", "ease-content", "text", {"modalities": ("text",)}),
    (
        "kernel-content (uncalibrated)",
        "kernel-content",
        "text",
        {"modalities": ("text",), "cold_scales": (1.0,)},
    ),
    ("kernel-content", "kernel-content", "text", {"modalities": ("text",)}),
    (
        "marec-content (α on cold only)",
        "marec-content",
        "text",
        {"modalities": ("text",), "calibrate": False},
    ),
    ("marec-content", "marec-content", "text", {"modalities": ("text",)}),
    (
        "hybrid (blend: fixed)",
        "hybrid",
        "text",
        {"modalities": ("text",), "blend": "fixed", "progress": False},
    ),
    ("hybrid", "hybrid", "text", {"modalities": ("text",), "progress": False}),
]
"""(row label, model, content shown, settings). The uncalibrated rows are the models as
they were before the mixed validation: ``kernel-content`` with its content columns as
predicted (factor 1), ``marec-content`` with α chosen on pseudo-cold items alone, the
hybrid with its half-and-half blend (``blend: fixed``; its default chooses the warm
weight on valid and the cold factor on the mixed validation)."""


def row(
    ds: fr.Dataset, seed: int, label: str, model: str, content: str, settings: dict[str, Any]
) -> dict[str, Any]:
    """Fit one model on the mixed split and evaluate it (protocols a and b)."""
    split = fr.split(ds, "cold-items", seed=seed, warm_test_ratio=WARM_TEST)
    if "seed" in fr.list_models()[model].__dataclass_fields__:
        settings = {**settings, "seed": seed}
    fitted = fr.build_model(model, **settings).fit(split)
    res = fr.evaluate(fitted, split, ks=(10,))
    assert res.all_items is not None
    history = fitted.history or {}
    return {
        "seed": seed,
        "model": label,
        "content": content,
        "(a) ndcg@10": res.metrics["ndcg@10"],
        "(b) ndcg@10": res.all_items["ndcg@10"],
        "(b) recall@10": res.all_items["recall@10"],
        "cold share@10": res.all_items["cold_share@10"],
        "cold truth share": res.all_items["cold_truth_share"],
        "chosen": _chosen(history),
        "fit_s": res.timings["fit_s"],
    }


def _chosen(history: dict[str, Any]) -> str:
    """The calibration the model chose: α (marec-content), the cold factor (kernel-content),
    the warm weight and the cold factor (hybrid)."""
    if "chosen" in history:
        chosen = history["chosen"]
        return f"w {chosen['warm_blend'][0]:g}, factor {chosen['cold_scales'][0]:g}"
    if "alpha" in history:
        return f"α {history['alpha']:g}"
    return f"factor {history['cold_scale']:g}" if "cold_scale" in history else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=default_root())
    parser.add_argument("--seeds", default="2020,7")
    args = parser.parse_args()
    ds = fr.load_dataset("ml-100k", args.root)
    fr.embed_content(ds, {"text"})
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for label, model, content, settings in MODELS:
            rows.append(row(ds, seed, label, model, content, dict(settings)))
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    RESULTS.mkdir(exist_ok=True)
    write_json(
        RESULTS / "cold_mixed.json",
        {
            "dataset": "ml-100k",
            "split": f"cold-items, cold_share 0.2, warm_test_ratio {WARM_TEST}",
            "machine": f"{platform.machine()}, 2 CPU cores, no GPU",
            "rows": rows,
        },
    )
    table = format_table(rows, list(rows[0]), markdown=True)
    path = RESULTS / "cold_mixed.md"
    notes_head = "## Notes"
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(notes_head) :] if notes_head in old else ""
    text = "\n".join(
        [
            "# Cold and warm items in one ranking (ml-100k, `benchmarks/cold_mixed.py`)",
            "",
            f"Command: `.venv/bin/python benchmarks/cold_mixed.py --seeds {args.seeds}`. Split: `cold-items`",
            f"(20% of items held out with all their interactions) with `warm_test_ratio: {WARM_TEST}`",
            "(10% of each warm user's interactions in test as well). (a): only the cold items ranked,",
            "against their truth; (b): every item ranked against the mixed truth, with the share of",
            "the top-10 slots that go to cold items beside their share of the truth.",
            "",
            table,
        ]
    )
    path.write_text(text + "\n" + ("\n" + notes if notes else ""))
    print(text)


if __name__ == "__main__":
    main()
