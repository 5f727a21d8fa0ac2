"""Run RecBole 1.2.1 jobs in its own virtual environment and collect their results.

Make that environment once with ``make recbole-venv`` (it creates
``benchmarks/.recbole-venv`` with ``torch==2.13.0``, ``recbole==1.2.1``, ``setuptools<81``,
``numpy==1.26.4``, ``pandas==2.2.3``, ``scipy==1.11.4``, ``scikit-learn==1.5.2``).
"""

from __future__ import annotations

from pathlib import Path

from venv_child import run_in_venv

from fusionrank.columns import ITEM_ID, PARTS, RATING, TIMESTAMP, USER_ID
from fusionrank.data.splits import Split

HERE = Path(__file__).resolve().parent
VENV_PYTHON = HERE.parent / ".recbole-venv" / "bin" / "python"
RO_811 = {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"}


def recbole_available() -> bool:
    return VENV_PYTHON.exists()


def base_config(seed: int = 2020, topk: tuple[int, ...] = (10, 20)) -> dict:
    """Settings shared by every job: CPU, full ranking, our metrics, NDCG@10 for early stopping."""
    return {
        "seed": seed,
        "reproducibility": True,
        "use_gpu": False,
        "show_progress": False,
        "state": "ERROR",
        "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"],
        "topk": list(topk),
        "valid_metric": "NDCG@10",
        "stopping_step": 10,
        "eval_args": RO_811,
        "load_col": {"inter": [USER_ID, ITEM_ID, RATING, TIMESTAMP]},
        "checkpoint_dir": str(HERE.parent / ".work" / "recbole-saved"),
    }


def write_benchmark_files(split: Split, folder: Path, name: str) -> None:
    """Write our split as RecBole benchmark files (``<name>.train.inter`` ...), so that
    RecBole trains and evaluates on exactly the rows we do."""
    folder.mkdir(parents=True, exist_ok=True)
    header = f"{USER_ID}:token\t{ITEM_ID}:token\t{RATING}:float\t{TIMESTAMP}:float\n"
    for part in PARTS:
        frame = split.part(part)[[USER_ID, ITEM_ID, RATING, TIMESTAMP]]
        with open(folder / f"{name}.{part}.inter", "w") as f:
            f.write(header)
            frame.to_csv(f, sep="\t", header=False, index=False)


def run_job(model: str, dataset: str, data_path: Path, config: dict, timeout: int = 3600) -> dict:
    """Run one RecBole job in its venv; returns the child's result dict."""
    if not recbole_available():
        raise RuntimeError(f"RecBole venv missing at {VENV_PYTHON}; run `make recbole-venv`")
    job = {"model": model, "dataset": dataset, "data_path": str(Path(data_path).resolve()), "config": config}
    workdir = HERE.parent / ".work" / "recbole-cwd"  # RecBole writes log/ and log_tensorboard/ into its cwd
    workdir.mkdir(parents=True, exist_ok=True)
    return run_in_venv(
        VENV_PYTHON,
        HERE / "recbole_child.py",
        job,
        env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
        cwd=workdir,
        timeout=timeout,
        what=f"RecBole {model}",
    )
