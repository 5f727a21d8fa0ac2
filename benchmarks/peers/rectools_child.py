"""Runs inside RecTools' own virtual environment (``make rectools-venv``); never imported by fusionrank.

Reads one job as JSON on stdin and prints one ``RESULT {json}`` line. The work folder holds
``train/valid/test.parquet`` (user_id, item_id, weight, datetime) written by the parent.

- ``{"phase": "tune", ...}``: EASE (``ease_grid``) and ItemKNN (``knn_grid``) fitted on train,
  10 items for every valid user with train filtered, written to ``tune/<name>.parquet``; the
  parent scores them on valid and picks the settings.
- ``{"phase": "final", "ease_reg", "knn_k", ...}``: every model under both protocols, 10 items
  for every test user with train + valid filtered, written to ``lists/<protocol>/<model>.parquet``.

Each phase also writes its result to ``<phase>.json``: the settings, fit times, and in ``final``
the two-stage rerankers' training sets and an independent NDCG@10 of every list from
ir-measures (pytrec_eval) for the parent's cross-check.

The two-stage recipe is RecTools' ``candidate_ranking_model_tutorial.ipynb``: candidate
generators with ``keep_ranks``/``keep_scores`` and the tutorial's fill values,
``TimeRangeSplitter("7D", n_splits=1)`` for the reranker's targets,
``PerUserNegativeSampler(n_negatives=3, random_state=32)``, and its rerankers: the tutorial's
``LGBMReranker`` (a ``Reranker`` subclass that passes LightGBM's query groups, since plain
``Reranker`` does not) around ``LGBMRanker(random_state=32)``, and its headline
``CatBoostReranker(CatBoostClassifier(n_estimators=100, verbose=False, random_state=32))``.
The same models are run once more with RecTools' ``RandomSplitter`` in place of the tutorial's
time window (``[random targets]``): a diagnostic for our per-user random split, where the last
7 days of train hold about 40 usable users and targets that follow time, unlike test.
"""

from __future__ import annotations

import json
import sys
import time
import typing as tp
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import rectools
from catboost import CatBoostClassifier
from implicit.nearest_neighbours import CosineRecommender
from lightgbm import LGBMRanker
from rectools import Columns
from rectools.dataset import Dataset
from rectools.model_selection import RandomSplitter, Splitter, TimeRangeSplitter
from rectools.models import EASEModel, ImplicitItemKNNWrapperModel, PopularModel
from rectools.models.base import ModelBase
from rectools.models.ranking import (
    CandidateGenerator,
    CandidateRankingModel,
    CatBoostReranker,
    PerUserNegativeSampler,
    Reranker,
)
from rectools.models.ranking.candidate_ranking import NegativeSamplerBase

RANDOM_STATE = 32  # the tutorial's
K = 10
SPLITTER_WINDOW = "7D"  # the tutorial's TimeRangeSplitter("7D", n_splits=1)
RANDOM_FOLD = 0.125  # the diagnostic RandomSplitter: valid's size relative to train (10% / 80%)
SPLITTER_LABEL = f"TimeRangeSplitter {SPLITTER_WINDOW}"
RANDOM_LABEL = f"RandomSplitter {RANDOM_FOLD:g}"
PROTOCOLS = ("valid", "refit")
THREADS = 1  # every model single-threaded (the parent also sets OMP/BLAS threads to 1): on a shared
# 2-core machine LightGBM's two OpenMP threads took 15-70 s per fit instead of 0.2 s


class LGBMReranker(Reranker):
    """The tutorial's reranker for ``LGBMRanker``: rows sorted by user, one query group per user.
    It also records the size of the training set it was given."""

    def __init__(self, model: LGBMRanker, fit_kwargs: dict[str, tp.Any] | None = None) -> None:
        super().__init__(model)
        self.fit_kwargs = fit_kwargs
        self.train_stats: dict[str, float] = {}

    def _get_group(self, df: pd.DataFrame) -> np.ndarray:
        return df.groupby(by=[Columns.User])[Columns.Item].count().values

    def prepare_fit_kwargs(self, candidates_with_target: pd.DataFrame) -> dict[str, tp.Any]:
        self.train_stats = _train_stats(candidates_with_target)
        candidates_with_target = candidates_with_target.sort_values(by=[Columns.User])
        groups = self._get_group(candidates_with_target)
        candidates_with_target = candidates_with_target.drop(columns=Columns.UserItem)
        fit_kwargs = {
            "X": candidates_with_target.drop(columns=Columns.Target),
            "y": candidates_with_target[Columns.Target],
            "group": groups,
        }
        if self.fit_kwargs is not None:
            fit_kwargs.update(self.fit_kwargs)
        return fit_kwargs


class RecordingCatBoostReranker(CatBoostReranker):
    """RecTools' ``CatBoostReranker``, unchanged except that it records its training-set size."""

    train_stats: dict[str, float]

    def fit(self, candidates_with_target: pd.DataFrame) -> None:
        self.train_stats = _train_stats(candidates_with_target)
        super().fit(candidates_with_target)


class KeepAllNegatives(NegativeSamplerBase):
    """No negative sampling: every candidate that is not a target stays as a negative."""

    def sample_negatives(self, train: pd.DataFrame) -> pd.DataFrame:
        return train


def _train_stats(frame: pd.DataFrame) -> dict[str, float]:
    """Size of a reranker's training set, and the mean EASE rank (missing = n + 1) of its
    positives and negatives: how much the first stage says about the targets."""
    positive = frame[Columns.Target] == 1
    rank = frame["EASEModel_1_rank"]
    return {
        "rows": len(frame),
        "positives": int(positive.sum()),
        "users": int(frame[Columns.User].nunique()),
        "users_with_positive": int(frame.loc[positive, Columns.User].nunique()),
        "ease_rank_positives": float(rank[positive].mean()),
        "ease_rank_negatives": float(rank[~positive].mean()),
    }


def ease(reg: float) -> EASEModel:
    return EASEModel(regularization=reg, recommend_n_threads=THREADS, recommend_use_gpu_ranking=False)


def item_knn(k: int) -> ImplicitItemKNNWrapperModel:
    return ImplicitItemKNNWrapperModel(CosineRecommender(K=k, num_threads=THREADS))


def generators(ease_reg: float, knn_k: int, n: int) -> list[CandidateGenerator]:
    """EASE + ItemKNN + Popular with ranks and scores as features. Missing ranks are filled
    with ``n + 1`` and missing scores with the tutorial's LightGBM values (Popular 1.01,
    ItemKNN 1); EASE, which the tutorial does not use, gets 0."""
    fills = ((ease(ease_reg), 0.0), (item_knn(knn_k), 1.0), (PopularModel(), 1.01))
    return [
        CandidateGenerator(
            model,
            num_candidates=n,
            keep_ranks=True,
            keep_scores=True,
            scores_fillna_value=score_fill,
            ranks_fillna_value=n + 1,
        )
        for model, score_fill in fills
    ]


def make_splitter(kind: str) -> Splitter:
    """The tutorial's ``TimeRangeSplitter("7D")`` (``time``), or RecTools' ``RandomSplitter`` holding
    out 1/8 of the interactions at random (``random``: valid's share of train in our split)."""
    if kind == "time":
        return TimeRangeSplitter(SPLITTER_WINDOW, n_splits=1)
    return RandomSplitter(RANDOM_FOLD, n_splits=1, random_state=RANDOM_STATE)


def two_stage(
    ease_reg: float, knn_k: int, n: int, sample: bool, reranker: str, splitter: str = "time"
) -> CandidateRankingModel:
    """The tutorial's CandidateRankingModel with ``n`` candidates per generator; ``sample``:
    the tutorial's 3 negatives per user, else all candidates kept."""
    if reranker == "lgbm":
        rr: Reranker = LGBMReranker(LGBMRanker(random_state=RANDOM_STATE, n_jobs=THREADS))
    else:
        rr = RecordingCatBoostReranker(
            CatBoostClassifier(
                n_estimators=100, verbose=False, random_state=RANDOM_STATE, thread_count=THREADS
            )
        )
    sampler = (
        PerUserNegativeSampler(n_negatives=3, random_state=RANDOM_STATE) if sample else KeepAllNegatives()
    )
    return CandidateRankingModel(
        candidate_generators=generators(ease_reg, knn_k, n),
        splitter=make_splitter(splitter),
        reranker=rr,
        sampler=sampler,
    )


def read(work: Path, part: str) -> pd.DataFrame:
    frame = pd.read_parquet(work / f"{part}.parquet")
    frame[Columns.User] = frame[Columns.User].astype(str)
    frame[Columns.Item] = frame[Columns.Item].astype(str)
    frame[Columns.Datetime] = pd.to_datetime(frame[Columns.Datetime])
    return frame


def top_k(reco: pd.DataFrame, exclude: pd.DataFrame | None, k: int = K) -> pd.DataFrame:
    """The first ``k`` items of each user's list in RecTools' order, after dropping the
    (user, item) pairs in ``exclude`` (valid items that a train-fitted model cannot filter)."""
    reco = reco.sort_values([Columns.User, Columns.Rank], kind="stable")
    if exclude is not None:
        seen = pd.MultiIndex.from_frame(exclude[[Columns.User, Columns.Item]])
        reco = reco[~pd.MultiIndex.from_frame(reco[[Columns.User, Columns.Item]]).isin(seen)]
    reco = reco.groupby(Columns.User, sort=False).head(k).copy()
    reco[Columns.Rank] = reco.groupby(Columns.User, sort=False).cumcount() + 1
    return reco[[Columns.User, Columns.Item, Columns.Rank]].reset_index(drop=True)


def fit_and_list(
    model: ModelBase, data: Dataset, users: np.ndarray, k: int, exclude: pd.DataFrame | None
) -> tuple[pd.DataFrame, float, float]:
    start = time.perf_counter()
    model.fit(data)
    fit_s = time.perf_counter() - start
    reco = model.recommend(users=users, dataset=data, k=k, filter_viewed=True)
    return top_k(reco, exclude), fit_s, time.perf_counter() - start - fit_s


def tune(job: dict, work: Path) -> dict:
    train, valid = read(work, "train"), read(work, "valid")
    data = Dataset.construct(train)
    users = valid[Columns.User].unique()
    out = work / "tune"
    out.mkdir(exist_ok=True)
    fits: dict[str, float] = {}
    grid: list[tuple[str, Callable[[], ModelBase]]] = [
        *((f"ease_{r:g}", lambda r=r: ease(r)) for r in job["ease_grid"]),
        *((f"itemknn_{k}", lambda k=k: item_knn(k)) for k in job["knn_grid"]),
    ]
    for name, make in grid:
        lists, fit_s, _ = fit_and_list(make(), data, users, K, None)
        lists.to_parquet(out / f"{name}.parquet", index=False)
        fits[name] = fit_s
    return {"fit_s": fits}


def ir_measures_ndcg(lists: pd.DataFrame, truth: pd.DataFrame) -> tuple[float, int]:
    """Mean nDCG@10 by ir-measures (pytrec_eval) over the users in ``truth``; scores 11 - rank,
    so trec_eval's sort by score reproduces the list order."""
    import ir_measures
    from ir_measures import nDCG

    qrels = [ir_measures.Qrel(str(u), str(i), 1) for u, i in zip(truth[Columns.User], truth[Columns.Item])]
    run = [
        ir_measures.ScoredDoc(str(u), str(i), float(K + 1 - r))
        for u, i, r in zip(lists[Columns.User], lists[Columns.Item], lists[Columns.Rank])
    ]
    per_query = list(ir_measures.iter_calc([nDCG @ K], qrels, run))
    return float(np.mean([m.value for m in per_query])), len(per_query)


def final(job: dict, work: Path) -> dict:
    train, valid, test = read(work, "train"), read(work, "valid"), read(work, "test")
    users = test[Columns.User].unique()
    reg, knn_k = job["ease_reg"], job["knn_k"]
    models: dict[str, tuple[str, Callable[[], ModelBase]]] = {
        "EASE": ("-", lambda: ease(reg)),
        "ItemKNN": ("-", lambda: item_knn(knn_k)),
        "Popular": ("-", PopularModel),
    }
    for splitter, label in (("time", SPLITTER_LABEL), ("random", RANDOM_LABEL)):
        suffix = "" if splitter == "time" else " [random targets]"
        for variant, n, sample in (("a", 30, True), ("b", 100, False)):
            for rr, rr_name in (("lgbm", "LGBMRanker"), ("catboost", "CatBoost")):
                models[f"two-stage ({variant}) {rr_name}{suffix}"] = (
                    label,
                    lambda n=n, sample=sample, rr=rr, splitter=splitter: two_stage(
                        reg, knn_k, n, sample, rr, splitter
                    ),
                )
    result: dict[str, dict] = {}
    for protocol in PROTOCOLS:
        if protocol == "valid":  # fitted on train; valid items dropped from the lists afterwards
            data, exclude = Dataset.construct(train), valid
            k = K + int(valid[valid[Columns.User].isin(users)].groupby(Columns.User).size().max())
        else:  # fitted on train + valid, which RecTools filters itself
            data, exclude, k = Dataset.construct(pd.concat([train, valid], ignore_index=True)), None, K
        folder = work / "lists" / protocol
        folder.mkdir(parents=True, exist_ok=True)
        for name, (splitter_label, make) in models.items():
            model = make()
            lists, fit_s, rec_s = fit_and_list(model, data, users, k, exclude)
            stem = "".join(c if c.isalnum() else "_" for c in name).strip("_")
            file = folder / f"{stem}.parquet"
            lists.to_parquet(file, index=False)
            ndcg, n_queries = ir_measures_ndcg(lists, test)
            entry: dict[str, tp.Any] = {
                "file": str(file.relative_to(work)),
                "splitter": splitter_label,
                "fit_s": fit_s,
                "recommend_s": rec_s,
                "ir_measures_ndcg@10": ndcg,
                "ir_measures_queries": n_queries,
            }
            if isinstance(model, CandidateRankingModel):
                entry["reranker_train"] = getattr(model.reranker, "train_stats", {})
            result.setdefault(protocol, {})[name] = entry
    return result


def versions() -> dict[str, str]:
    import catboost
    import implicit
    import ir_measures
    import lightgbm

    return {
        "rectools": rectools.__version__,
        "implicit": implicit.__version__,
        "lightgbm": lightgbm.__version__,
        "catboost": catboost.__version__,
        "ir_measures": ir_measures.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": sys.version.split()[0],
    }


def main() -> None:
    job = json.loads(sys.stdin.read())
    work = Path(job["work"])
    out = tune(job, work) if job["phase"] == "tune" else final(job, work)
    settings = {k: job[k] for k in ("ease_grid", "knn_grid", "ease_reg", "knn_k") if k in job}
    result = {"phase": job["phase"], "settings": settings, "versions": versions(), **out}
    (work / f"{job['phase']}.json").write_text(json.dumps(result, indent=2) + "\n")
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
