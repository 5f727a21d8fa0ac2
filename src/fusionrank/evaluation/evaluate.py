"""``fr.evaluate(model, split)``: a fitted model's test metrics by the split's protocol.

One path for every model and split: the model is scored at its ``test`` stage, each test
user ranks all items (or the protocol's candidates: the cold items of ``cold-items``, the
target domain's items of ``cross-domain``) with their train and valid items excluded, and
the metrics come back as an :class:`Evaluation` that writes the metrics contract.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from fusionrank.columns import TEST, TRAIN, USER_ID, USER_IDX, VALID
from fusionrank.errors import InvalidArgumentError, NotFittedError
from fusionrank.evaluation.metrics import METRICS
from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking
from fusionrank.io import write_json

DISPLAY_SETTINGS = ("progress",)
"""Model settings that change what is shown, not the numbers: left out of the metrics."""
TRAINING_TIMES = ("time_to_best_s", "total_s")
"""Wall times of a training history: moved to ``timings`` (as ``train_<key>``)."""

if TYPE_CHECKING:
    from fusionrank.data.splits import Split
    from fusionrank.recommender import Recommender


@dataclass
class Evaluation:
    """Test metrics of one model on one split (``metrics``: mean over users, e.g.
    ``{"ndcg@10": ...}``; ``per_user``: one row per test user with ``user_id``)."""

    dataset: str
    split: str
    seed: int
    model: str
    config: dict[str, Any]
    metrics: dict[str, float]
    per_user: pd.DataFrame = field(repr=False)
    n_users: int
    timings: dict[str, float]
    all_items: dict[str, float] | None = None
    """``cold-items`` only: protocol (b), every item ranked (the headline is protocol (a)),
    with ``cold_share@K`` (the share of the top-K slots that go to cold items) beside
    ``cold_truth_share`` (the share of the test interactions that are cold items): how well
    cold and warm scores are calibrated against each other."""
    training: dict[str, Any] | None = None
    """The training history of models with a training loop (epochs, best epoch ...)."""

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={v:.4f}" for k, v in self.metrics.items() if k.startswith(("ndcg@", "recall@"))
        )
        return f"Evaluation({self.model!r} on {self.dataset} {self.split} seed {self.seed}: {shown})"

    def to_dict(self) -> dict[str, Any]:
        """The metrics contract: ``{"dataset", "split", "model", "metrics", "timings", ...}``."""
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "split": self.split,
            "seed": self.seed,
            "model": self.model,
            "config": self.config,
            "metrics": self.metrics,
            "n_users": self.n_users,
            "timings": self.timings,
        }
        if self.all_items is not None:
            out["all_items"] = self.all_items
        if self.training is not None:
            out["training"] = self.training
        return out

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically); returns the path."""
        write_json(path, self.to_dict())
        return Path(path)


def evaluate(
    model: Recommender,
    split: Split,
    ks: tuple[int, ...] = (5, 10, 20, 50),
    *,
    metrics: tuple[str, ...] = METRICS,
    chunk_size: int = 1024,
) -> Evaluation:
    """Evaluate a model fitted on ``split`` on its test part, by full ranking.

    >>> import tempfile, pandas as pd, fusionrank as fr
    >>> events = pd.DataFrame({"user_id": list("aabbbccc"), "item_id": list("xyxyzyzx")})
    >>> split = fr.split(fr.Dataset.from_files(events, cache_dir=tempfile.mkdtemp()), "leave-last")
    >>> result = fr.evaluate(fr.build_model("pop").fit(split), split, ks=(1, 2))
    >>> result.metrics["hit@2"], list(result.per_user.columns[:2])
    (1.0, ['user_id', 'user_idx'])
    """
    if model.items is None or model.users is None:
        raise NotFittedError(f"{model.name} is not fitted; call model.fit(split) first")
    if model.items != split.items or model.users != split.users:
        raise InvalidArgumentError(
            f"{model.name} was fitted on another split (its user or item ids differ from this one)"
        )
    config = EvalConfig(ks=tuple(ks), metrics=tuple(metrics), chunk_size=chunk_size)
    model.at_stage("test")
    train = split.matrix(TRAIN)
    truth, exclude = split.matrix(TEST), split.matrix(TRAIN, VALID)
    popularity = np.asarray(train.sum(axis=0)).ravel()
    t0 = time.perf_counter()
    candidates = split.candidate_items()
    headline = truth
    if split.config.kind == "cold-items" and split.config.warm_test_ratio:
        # protocol (a) ranks the cold items only: its truth is theirs (warm test rows are (b)'s)
        headline = sp.csr_matrix(truth.multiply(np.asarray(candidates, dtype=truth.dtype)[None, :]))
        headline.eliminate_zeros()
    result = evaluate_ranking(
        model.score, headline, exclude, config, item_mask=candidates, popularity=popularity
    )
    all_items = None
    if split.config.kind == "cold-items":
        cold = np.asarray(candidates, dtype=bool)
        all_items = evaluate_ranking(
            model.score, truth, exclude, config, popularity=popularity, share_items=cold, share_name="cold"
        ).metrics
    per_user = result.per_user
    per_user.insert(0, USER_ID, split.users.to_ids(per_user[USER_IDX].to_numpy()))
    timings = {"fit_s": model.fit_seconds, "evaluate_s": time.perf_counter() - t0}
    training = dict(model.history) if model.history is not None else None
    for key in TRAINING_TIMES:  # wall times vary from run to run: kept apart from the numbers
        if training is not None and key in training:
            timings[f"train_{key}"] = training.pop(key)
    return Evaluation(
        dataset=split.name,
        split=split.config.kind,
        seed=split.config.seed,
        model=model.name,
        config={k: v for k, v in dataclasses.asdict(model.config).items() if k not in DISPLAY_SETTINGS},
        metrics=result.metrics,
        per_user=per_user,
        n_users=result.n_users,
        timings=timings,
        all_items=all_items,
        training=training,
    )
