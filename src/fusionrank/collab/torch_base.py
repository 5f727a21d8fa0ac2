"""Base of the neural recommenders: holds the module, runs the shared training loop with
full-ranking validation on ``split.valid``, saves weights as safetensors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from fusionrank.collab.negatives import NegativeSampler
from fusionrank.collab.trainer import Trainable, TrainConfig, seed_everything, train_loop
from fusionrank.columns import TRAIN, VALID
from fusionrank.errors import NotFittedError
from fusionrank.recommender import Recommender

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


def ranking_validator(
    model: Recommender, split: Split, metric: str, max_users: int = 0, seed: int = 0
) -> Callable[[], float] | None:
    """``metric`` (e.g. ``ndcg@10``) of ``model.score`` on ``split.valid`` by full ranking,
    training items excluded; None when the split has no validation rows. With ``max_users``
    and more validation users than that, a seeded sample of them is scored, so that
    validation does not dominate an epoch on a large user base."""
    from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking

    if not len(split.valid):
        return None
    valid, train = split.matrix(VALID), split.matrix(TRAIN)
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    if max_users and len(users) > max_users:
        keep = np.zeros(valid.shape[0], dtype=valid.dtype)
        keep[np.random.default_rng(seed).choice(users, size=max_users, replace=False)] = 1
        valid = sp.csr_matrix(sp.diags(keep) @ valid)
        valid.eliminate_zeros()
    config = EvalConfig(ks=(int(metric.split("@")[1]),))
    return lambda: evaluate_ranking(model.score, valid, train, config).metrics[metric]


class TorchRecommender(Recommender, Trainable):
    """A recommender trained by :func:`fusionrank.collab.trainer.train_loop`.

    Subclasses give a config class that inherits :class:`TrainConfig` (with good defaults
    on ml-100k), build their module in :meth:`build`, and implement ``training_batches``,
    ``batch_loss`` and ``score``.
    """

    config: Any

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.module: torch.nn.Module | None = None  # type: ignore[assignment]

    @property
    def device(self) -> torch.device:
        return torch.device(self.config.device)

    def build(self) -> torch.nn.Module:  # pragma: no cover - each model builds its own
        raise NotImplementedError

    def prepare(self, split: Split) -> None:
        """Per-model data preparation before training (graphs, sequences...)."""
        self.train_matrix = split.matrix(TRAIN)
        self.sampler = NegativeSampler(self.train_matrix, getattr(self.config, "negatives", "uniform"))

    def _fit(self, split: Split) -> None:
        cfg: TrainConfig = self.config
        seed_everything(cfg.seed)
        self.prepare(split)
        self.module = self.build().to(self.device)
        validate = (
            ranking_validator(self, split, cfg.valid_metric, cfg.valid_users, cfg.seed)
            if cfg.validation
            else None
        )
        self.history = train_loop(self, cfg, validate, desc=type(self).__name__).as_dict()
        self.at_stage("test")

    def _check_fitted(self) -> None:
        if self.module is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(split) first")

    # persistence: module weights + whatever the model needs to score
    def state(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        assert self.module is not None  # noqa: S101
        arrays = {f"module.{k}": v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}
        arrays.update(self.extra_state())
        return arrays

    def extra_state(self) -> dict[str, np.ndarray]:
        m = sp.csr_matrix(self.train_matrix)
        return {"train.indptr": m.indptr.astype(np.int64), "train.indices": m.indices.astype(np.int64)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        indptr, indices = arrays["train.indptr"], arrays["train.indices"]
        self.train_matrix = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr), shape=(self.n_users, self.n_items)
        )
        self.load_extra_state(arrays)
        self.module = self.build().to(self.device)
        self.module.load_state_dict(
            {
                k[len("module.") :]: torch.from_numpy(v.copy())
                for k, v in arrays.items()
                if k.startswith("module.")
            }
        )
        self.module.eval()
        self.on_epoch_end()

    def load_extra_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Hook for models whose scoring needs more than the training matrix."""


def pairs_from_matrix(train: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    coo = sp.coo_matrix(train)
    return coo.row.astype(np.int64), coo.col.astype(np.int64)


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for s in range(0, n, batch_size):
        yield order[s : s + batch_size]


class PairwiseRecommender(TorchRecommender):
    """Base of the models trained on (user, positive item, sampled negatives) triples."""

    def prepare(self, split: Split) -> None:
        super().prepare(split)
        self._users, self._items = pairs_from_matrix(self.train_matrix)

    def training_batches(self, rng: np.random.Generator, config: Any) -> Iterator[tuple[torch.Tensor, ...]]:
        """One epoch: every training pair once, shuffled, with fresh negatives (b,), (b,), (b, k)."""
        negs = self.sampler.sample(self._users, rng, config.num_negatives)
        for idx in shuffled_batches(len(self._users), config.batch_size, rng):
            yield (
                torch.from_numpy(self._users[idx]),
                torch.from_numpy(self._items[idx]),
                torch.from_numpy(negs[idx]),
            )
