"""Runs inside RecBole's own virtual environment (never imported by fusionrank).

Reads one job as JSON on stdin: {"model", "dataset", "data_path", "config"}; trains and
evaluates with ``recbole.quick_start.run_recbole`` and prints one JSON line with the
test and validation results, timings, epochs and peak RSS.

Patch needed on current NumPy: RecBole 1.2.1 still uses the aliases ``np.float``,
``np.int`` and ``np.bool`` (removed in NumPy 1.24), so they are restored below before
RecBole is imported. Its checkpoints are pickles, so PyTorch >= 2.6 needs
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (set by the parent).
"""

import json
import resource
import sys
import time

import numpy as np

for _alias, _type in (("float", float), ("int", int), ("bool", bool), ("long", int)):
    if not hasattr(np, _alias):
        setattr(np, _alias, _type)

import logging  # noqa: E402

from recbole.quick_start import run_recbole  # noqa: E402


def _peak_rss_mb() -> float:
    """VmHWM (reset at exec; ru_maxrss would report the parent's peak at fork time)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time_to_best(valids: list, start: float, total: float) -> float:
    if not valids:
        return total
    best = max(range(len(valids)), key=lambda i: valids[i][1])  # first best, as RecBole keeps it
    return valids[best][0] - start


def main() -> None:
    job = json.loads(sys.stdin.read())
    logging.disable(logging.INFO)
    config = {"data_path": job["data_path"], **job["config"]}
    epochs = []
    import recbole.trainer.trainer as trainer_mod

    original = trainer_mod.Trainer._train_epoch

    def counting(self, *args, **kwargs):
        epochs.append(time.perf_counter())
        return original(self, *args, **kwargs)

    valids = []
    original_valid = trainer_mod.Trainer._valid_epoch

    def recording(self, *args, **kwargs):
        score, result = original_valid(self, *args, **kwargs)
        valids.append((time.perf_counter(), float(score)))
        return score, result

    trainer_mod.Trainer._train_epoch = counting
    trainer_mod.Trainer._valid_epoch = recording
    start = time.perf_counter()
    result = run_recbole(
        model=job["model"], dataset=job["dataset"], config_dict=config, saved=job.get("saved", False)
    )
    total = time.perf_counter() - start
    out = {
        "model": job["model"],
        "test": {k.lower(): float(v) for k, v in result["test_result"].items()},
        "valid": {k.lower(): float(v) for k, v in result["best_valid_result"].items()},
        "timings": {"total_s": total, "time_to_best_s": _time_to_best(valids, start, total)},
        "epochs": len(epochs),
        "peak_rss_mb": _peak_rss_mb(),
    }
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
