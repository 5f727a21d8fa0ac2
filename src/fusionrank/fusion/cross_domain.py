"""Cross-domain user profiles: serve a user in a target domain from their history in a
source domain.

Items get their domain from the dataset (see :meth:`Split.item_domains`). On the
``cross-domain`` split the users being tested have no target-domain history at all; on
any other split the same models are candidate sources of the ranking pipeline: they score
the target domain's items (``-inf`` elsewhere) from the aligned source profile, joined
with the target profile where the user has target history.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from fusionrank.collab.mf import BPR, fixed_schedule
from fusionrank.collab.trainer import Trainable, TrainConfig, seed_everything, train_loop
from fusionrank.columns import TRAIN, VALID
from fusionrank.errors import InvalidArgumentError
from fusionrank.recommender import Recommender, csr_from_arrays, csr_to_arrays

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


class DomainRecommender(Recommender):
    """Base: which items are in the source and the target domain, the training matrix of
    each, and target-item scores with ``-inf`` for the other items."""

    def _fit(self, split: Split) -> None:
        source, target = (self.config.source, self.config.target)
        if source is None or target is None:
            default = split.domain_pair()
            source, target = source or default[0], target or default[1]
        domains = split.item_domains()
        self.domains = (source, target)
        self.source_items = domains == source
        self.target_items = domains == target
        if not self.source_items.any() or not self.target_items.any():
            raise InvalidArgumentError(f"{self.name}: no items in domain {source!r} or {target!r}")
        train = sp.csr_matrix(split.matrix(TRAIN), dtype=np.float32)
        self._src = _columns(train, self.source_items)
        self._tgt = _columns(train, self.target_items)
        self._fit_domains(split)

    def _fit_domains(self, split: Split) -> None:
        """Model-specific fitting."""

    def _target_only(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float32)
        scores[:, ~self.target_items] = -np.inf
        return scores

    def meta(self) -> dict[str, Any]:
        return {"domains": list(self.domains)}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.domains = tuple(meta["domains"])

    def _domain_state(self) -> dict[str, np.ndarray]:
        return {
            "source_items": self.source_items,
            "target_items": self.target_items,
            **csr_to_arrays("src", self._src),
            **csr_to_arrays("tgt", self._tgt),
        }

    def _load_domain_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.source_items, self.target_items = arrays["source_items"], arrays["target_items"]
        self._src, self._tgt = csr_from_arrays("src", arrays), csr_from_arrays("tgt", arrays)


def _columns(m: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """``m`` with the columns outside ``keep`` zeroed (and dropped from storage)."""
    out = sp.csr_matrix(m.multiply(keep.astype(np.float32)[None, :]))
    out.eliminate_zeros()
    return out


@dataclass(frozen=True)
class EMCDRConfig(TrainConfig):
    """MF per domain and an MLP from source to target user vectors."""

    hidden: int = 128
    """MLP hidden width."""
    source: str | None = None
    """Domain users are served from (default: the split's or the dataset profile's)."""
    target: str | None = None
    """Domain whose items are scored (default: the split's or the dataset profile's)."""
    epochs: int = 200
    """MLP epochs (full batch)."""
    validation: bool = False
    """The MLP trains a fixed number of epochs."""


class EMCDR(DomainRecommender, Trainable):
    """EMCDR (Man et al., 2017): BPR in each domain; an MLP learns to map the source vectors
    of users active in both domains to their target vectors; a user is served the mapped one."""

    config_class = EMCDRConfig

    def _fit_domains(self, split: Split) -> None:
        cfg = self.config
        seed_everything(cfg.seed)
        schedule = fixed_schedule(cfg.seed)
        self.src_mf = BPR(schedule).fit(split.restrict_items(self.source_items))
        self.tgt_mf = BPR(schedule).fit(split.restrict_items(self.target_items))
        has_src = np.diff(self._src.indptr) > 0
        has_tgt = np.diff(self._tgt.indptr) > 0
        overlap = np.flatnonzero(has_src & has_tgt)
        self._xs = torch.from_numpy(self.src_mf.user_embeddings()[overlap])
        self._ys = torch.from_numpy(self.tgt_mf.user_embeddings()[overlap])
        self.module = nn.Sequential(
            nn.Linear(self._xs.shape[1], cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, self._ys.shape[1])
        )
        self.history = train_loop(self, cfg, None, desc=self.name).as_dict()

    def training_batches(self, rng: np.random.Generator, config: Any) -> Iterator[None]:
        yield None  # full batch

    def batch_loss(self, batch: Any) -> torch.Tensor:
        return nn.functional.mse_loss(self.module(self._xs), self._ys)

    @torch.inference_mode()
    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        mapped = self.module(torch.from_numpy(self.src_mf.user_embeddings()[users])).numpy()
        return self._target_only(mapped @ self.tgt_mf.item_embeddings().T + self.tgt_mf.item_bias())

    def state(self) -> dict[str, np.ndarray]:
        mlp = {f"mlp.{k}": v.detach().numpy() for k, v in self.module.state_dict().items()}
        src = {f"src_mf.{k}": v for k, v in self.src_mf.state().items()}
        tgt = {f"tgt_mf.{k}": v for k, v in self.tgt_mf.state().items()}
        return {**mlp, **src, **tgt, **self._domain_state()}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._load_domain_state(arrays)
        for name in ("src_mf", "tgt_mf"):
            mf = BPR(fixed_schedule(self.config.seed))
            mf.n_users, mf.n_items = self.n_users, self.n_items
            mf.load_state({k[len(name) + 1 :]: v for k, v in arrays.items() if k.startswith(name + ".")})
            setattr(self, name, mf)
        dim = self.src_mf.user_embeddings().shape[1]
        self.module = nn.Sequential(
            nn.Linear(dim, self.config.hidden), nn.Tanh(), nn.Linear(self.config.hidden, dim)
        )
        self.module.load_state_dict(
            {k[4:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("mlp.")}
        )
        self.module.eval()


@dataclass(frozen=True)
class CrossDomainConfig(TrainConfig):
    """Per-domain bag encoders aligned by InfoNCE into a shared profile."""

    dim: int = 64
    """Profile size."""
    temperature: float = 0.1
    """InfoNCE temperature."""
    nce_weight: float = 0.5
    """Weight of the alignment loss."""
    source: str | None = None
    """Domain users are served from (default: the split's or the dataset profile's)."""
    target: str | None = None
    """Domain whose items are scored (default: the split's or the dataset profile's)."""
    epochs: int = 60
    batch_size: int = 128
    """Users per step."""
    learning_rate: float = 3e-3
    patience: int = 8


class CrossDomainModule(nn.Module):
    def __init__(self, n_items: int, dim: int) -> None:
        super().__init__()
        self.source_bag = nn.Embedding(n_items, dim)
        self.target_bag = nn.Embedding(n_items, dim)
        self.items = nn.Embedding(n_items, dim)
        self.bias = nn.Embedding(n_items, 1)
        for e in (self.source_bag, self.target_bag, self.items):
            nn.init.normal_(e.weight, std=0.05)
        nn.init.zeros_(self.bias.weight)
        self.source_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    @staticmethod
    def bag(history: torch.Tensor, table: nn.Embedding) -> torch.Tensor:
        return (history @ table.weight) / history.sum(1, keepdim=True).clamp(min=1).sqrt()

    def source_profile(self, history: torch.Tensor) -> torch.Tensor:
        return self.source_head(self.bag(history, self.source_bag))

    def target_profile(self, history: torch.Tensor) -> torch.Tensor:
        return self.bag(history, self.target_bag)

    def logits(self, profile: torch.Tensor) -> torch.Tensor:
        return profile @ self.items.weight.T + self.bias.weight.T


class CrossDomain(DomainRecommender, Trainable):
    """Source and target profiles; the target profile and the source profile both predict
    target items (softmax over target items), and InfoNCE pulls a user's two profiles
    together. A user without target history is served from the source profile alone; one
    with target history from the mean of both profiles."""

    config_class = CrossDomainConfig
    module: CrossDomainModule

    def _fit_domains(self, split: Split) -> None:
        cfg = self.config
        seed_everything(cfg.seed)
        self._users = np.flatnonzero(np.diff(self._tgt.indptr) > 0)
        self._mask = torch.from_numpy(self.target_items)
        self.module = CrossDomainModule(self.n_items, cfg.dim)
        validate = None
        valid = _columns(split.matrix(VALID), self.target_items)
        if cfg.validation and valid.nnz:
            from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking

            train = split.matrix(TRAIN)

            def validate() -> float:
                return evaluate_ranking(
                    self.score, valid, train, EvalConfig(ks=(10,)), item_mask=self.target_items
                ).metrics["ndcg@10"]

        self.history = train_loop(self, cfg, validate, desc="cross-domain").as_dict()

    def training_batches(self, rng: np.random.Generator, config: Any) -> Iterator[tuple[torch.Tensor, ...]]:
        tgt, src = self._tgt, self._src
        for idx in np.array_split(
            rng.permutation(self._users), max(1, len(self._users) // config.batch_size)
        ):
            # one held-out target item per user is the label; it leaves the target bag
            label = np.array([rng.choice(tgt[u].indices) for u in idx], dtype=np.int64)
            yield (
                torch.from_numpy(tgt[idx].toarray()),
                torch.from_numpy(src[idx].toarray()),
                torch.from_numpy(label),
            )

    def batch_loss(self, batch: Any) -> torch.Tensor:
        t_hist, s_hist, label = batch
        m, cfg = self.module, self.config
        t_bag = t_hist.clone()
        t_bag[torch.arange(len(label)), label] = 0
        p_t = m.target_profile(t_bag)
        p_s = m.source_profile(s_hist)
        has_src = s_hist.sum(1) > 0
        loss = _masked_rec(m, p_t, t_hist, label, self._mask)
        if has_src.any():
            loss = loss + _masked_rec(m, p_s[has_src], t_hist[has_src], label[has_src], self._mask)
            a = nn.functional.normalize(p_s[has_src], dim=1)
            b = nn.functional.normalize(p_t[has_src], dim=1)
            sim = a @ b.T / cfg.temperature
            idx = torch.arange(len(a))
            nce = (nn.functional.cross_entropy(sim, idx) + nn.functional.cross_entropy(sim.T, idx)) / 2
            loss = loss + cfg.nce_weight * nce
        return loss

    @torch.inference_mode()
    def score(self, users: np.ndarray) -> np.ndarray:
        """Target-item scores from the source profile, averaged with the target profile
        for users who have target history; ``-inf`` for items outside the target domain."""
        users = self._check_users(users)
        m = self.module
        profile = m.source_profile(torch.from_numpy(self._src[users].toarray()))
        t_hist = torch.from_numpy(self._tgt[users].toarray())
        has_tgt = t_hist.sum(1, keepdim=True) > 0
        profile = torch.where(has_tgt, (profile + m.target_profile(t_hist)) / 2, profile)
        return self._target_only(m.logits(profile).numpy())

    def state(self) -> dict[str, np.ndarray]:
        module = {f"module.{k}": v.detach().numpy() for k, v in self.module.state_dict().items()}
        return {**module, **self._domain_state()}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._load_domain_state(arrays)
        self.module = CrossDomainModule(self.n_items, self.config.dim)
        self.module.load_state_dict(
            {k[7:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("module.")}
        )
        self.module.eval()


def _masked_rec(
    module: CrossDomainModule,
    profile: torch.Tensor,
    t_hist: torch.Tensor,
    label: torch.Tensor,
    target_mask: torch.Tensor,
) -> torch.Tensor:
    """Softmax over target items, the user's other target positives masked out."""
    logits = module.logits(profile).masked_fill(~target_mask, -torch.inf)
    others = t_hist.bool()
    others[torch.arange(len(label)), label] = False
    return nn.functional.cross_entropy(logits.masked_fill(others, -torch.inf), label)
