"""The local engine: the work runs in this process, chunk after chunk; boosters are
trained by ``lightgbm.train`` here."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from fusionrank.engines.base import BoosterFit, C, MapStats, R, RankTable, Work
from fusionrank.errors import InvalidArgumentError


def physical_cores() -> int:
    """Physical CPU cores, counted as LightGBM's scikit-learn API counts them (its own
    helper, so that the boosters stay those of the scikit-learn ranker this trainer replaced)."""
    try:
        from lightgbm.compat import _LGBMCpuCount

        return int(_LGBMCpuCount(only_physical_cores=True))
    except ImportError:  # a LightGBM without the helper
        return os.cpu_count() or 1


class LocalEngine:
    """Runs :class:`Work` in this process (``work.here`` when the caller built it already)."""

    name = "local"

    def __init__(self) -> None:
        self.stats = MapStats()

    @classmethod
    def create(
        cls, options: object | None = None, *, quiet: bool = True, strict: bool = False
    ) -> LocalEngine:
        """The engine :func:`~fusionrank.engines.get_engine` hands out; it uses no options
        (with ``strict``, options that differ from the defaults are refused)."""
        if strict and options is not None:
            import dataclasses

            given = [
                "--" + f.name.replace("_", "-")
                for f in dataclasses.fields(options)  # type: ignore[arg-type]
                if getattr(options, f.name) != f.default
            ]
            raise InvalidArgumentError(
                f"{', '.join(given) or 'Ray options'} need(s) --engine ray (engine='ray' in Python)"
            )
        return cls()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def check_device(self, device: str) -> None:
        """Any device torch has here."""

    def placement(self, n_chunks: int, work: Work[Any, Any] | None = None) -> str:
        return ""

    def map(self, work: Work[C, R], chunks: Sequence[C], *, ordered: bool = True) -> Iterator[R]:
        """Results in chunk order (also with ``ordered=False``: one worker finishes the
        chunks in the order it gets them)."""
        self.stats = MapStats()
        fn = work.here if work.here is not None else work.build()
        t0 = time.perf_counter()
        for position, result in enumerate(fn(iter(chunks))):
            self.stats.arrivals.append((time.perf_counter() - t0, position))
            yield result

    def train_booster(
        self,
        params: dict[str, Any],
        train: RankTable,
        stop: RankTable | None,
        rounds: int,
        early_stopping_rounds: int,
        *,
        workers: int = 1,
        storage: str | None = None,
    ) -> BoosterFit:
        """``lightgbm.train`` in this process (``workers`` and ``storage`` are not used);
        ``params["num_threads"]`` 0 means this machine's physical cores, the default of
        LightGBM's scikit-learn API."""
        import lightgbm as lgb

        if not params.get("num_threads"):
            params = {**params, "num_threads": physical_cores()}
        train_set = lgb.Dataset(train.x, train.y, group=train.group)
        valid_sets: list[Any] = []
        callbacks: list[Any] = []
        if stop is not None:
            valid_sets = [lgb.Dataset(stop.x, stop.y, group=stop.group, reference=train_set)]
            callbacks = [lgb.early_stopping(early_stopping_rounds, verbose=False)]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*eval_set.*")
            booster = lgb.train(
                params,
                train_set,
                num_boost_round=rounds,
                valid_sets=valid_sets,
                valid_names=["valid_0"][: len(valid_sets)],
                callbacks=callbacks,
            )
        if stop is None:
            return BoosterFit(booster, rounds, math.nan)
        best = int(booster.best_iteration or rounds)
        score = float(booster.best_score["valid_0"][f"ndcg@{params['eval_at'][0]}"])
        return BoosterFit(booster, best, score)

    def summary(self, rows: Sequence[int], unit: str) -> str | None:
        return None
