"""Cross-domain user profiles: serve a user who is cold in the target domain from their
source-domain history.

The protocol split lives here too: items get a domain by :data:`DOMAIN_RULE`; 20% of the
users active in both domains (seeded) lose their target-domain interactions (test), and
another 10% are held out the same way for validation (epoch choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from fusionrank.collab.mf import BPR, fixed_schedule
from fusionrank.collab.trainer import copy_state, seed_everything
from fusionrank.columns import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX
from fusionrank.data.dataset import Dataset
from fusionrank.data.idmap import IdMap
from fusionrank.data.side import DOMAIN_RULE, item_domains
from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking


@dataclass
class CrossDomainSplit:
    """Interactions of both domains with the cold users' target rows moved to valid/test."""

    users: IdMap
    items: IdMap
    domain: np.ndarray  # (n_items,) "A" or "B"
    source: str
    target: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    test_users: np.ndarray
    valid_users: np.ndarray

    def matrix(self, frame: pd.DataFrame, domain: str | None = None) -> sp.csr_matrix:
        m = sp.csr_matrix(
            (np.ones(len(frame), np.float32), (frame[USER_IDX], frame[ITEM_IDX])),
            shape=(len(self.users), len(self.items)),
        )
        m.sum_duplicates()
        m.data[:] = 1
        if domain is not None:
            m = sp.csr_matrix(m.multiply((self.domain == domain)[None, :]))
            m.eliminate_zeros()
        return m


def make_cross_domain_split(
    data: Dataset,
    seed: int = 2020,
    source: str = "A",
    target: str = "B",
    cold_share: float = 0.2,
    valid_share: float = 0.1,
) -> CrossDomainSplit:
    """Split ml-100k-like data into the cross-domain protocol (see the module docstring)."""
    if data.items is None:
        raise ValueError(f"{data.name} has no item table: domains come from item genres")
    domains = item_domains(data.items, DOMAIN_RULE)
    frame = data.interactions[data.interactions[ITEM_ID].isin(domains.index)].reset_index(drop=True)
    users = IdMap(pd.unique(frame[USER_ID]))
    items = IdMap(pd.unique(frame[ITEM_ID]))
    frame = frame.assign(
        **{USER_IDX: users.to_index(frame[USER_ID]), ITEM_IDX: items.to_index(frame[ITEM_ID])}
    )
    domain = domains.reindex(items.ids).to_numpy().astype(str)
    in_target = domain[frame[ITEM_IDX].to_numpy()] == target
    both = np.intersect1d(frame.loc[in_target, USER_IDX].unique(), frame.loc[~in_target, USER_IDX].unique())
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(both)
    n_test, n_valid = round(cold_share * len(both)), round(valid_share * len(both))
    test_users, valid_users = np.sort(chosen[:n_test]), np.sort(chosen[n_test : n_test + n_valid])
    u = frame[USER_IDX].to_numpy()
    is_test = in_target & np.isin(u, test_users)
    is_valid = in_target & np.isin(u, valid_users)
    return CrossDomainSplit(
        users=users,
        items=items,
        domain=domain,
        source=source,
        target=target,
        train=frame[~is_test & ~is_valid].reset_index(drop=True),
        valid=frame[is_valid].reset_index(drop=True),
        test=frame[is_test].reset_index(drop=True),
        test_users=test_users,
        valid_users=valid_users,
    )


class TargetPop:
    """Target-domain popularity among training interactions."""

    def fit(self, split: CrossDomainSplit) -> TargetPop:
        self._pop = np.asarray(split.matrix(split.train, split.target).sum(axis=0)).ravel().astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self._pop, (len(users), len(self._pop)))


@dataclass(frozen=True)
class EMCDRConfig:
    """MF per domain and an MLP from source to target user vectors."""

    hidden: int = 128
    """MLP hidden width."""
    epochs: int = 200
    """MLP epochs (full batch)."""
    learning_rate: float = 1e-3
    """Adam step size of the MLP."""
    seed: int = 2020
    """Seed."""


class EMCDR:
    """EMCDR (Man et al., 2017): BPR in each domain; an MLP learns to map the source vectors
    of users active in both domains to their target vectors; a cold user gets the mapped one."""

    config_class = EMCDRConfig

    def __init__(self, config: EMCDRConfig | None = None) -> None:
        self.config = config or EMCDRConfig()

    def fit(self, split: CrossDomainSplit) -> EMCDR:
        cfg = self.config
        seed_everything(cfg.seed)
        train_cfg = fixed_schedule(cfg.seed)
        src = split.matrix(split.train, split.source)
        tgt = split.matrix(split.train, split.target)
        self.src_mf = BPR(train_config=train_cfg).fit(src)
        self.tgt_mf = BPR(train_config=train_cfg).fit(tgt)
        has_src = np.asarray(src.sum(axis=1)).ravel() > 0
        has_tgt = np.asarray(tgt.sum(axis=1)).ravel() > 0
        overlap = np.flatnonzero(has_src & has_tgt)
        xs = torch.from_numpy(self.src_mf.user_embeddings()[overlap])
        ys = torch.from_numpy(self.tgt_mf.user_embeddings()[overlap])
        self.mlp = nn.Sequential(
            nn.Linear(xs.shape[1], cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, ys.shape[1])
        )
        opt = torch.optim.Adam(self.mlp.parameters(), lr=cfg.learning_rate)
        for _ in range(cfg.epochs):
            loss = nn.functional.mse_loss(self.mlp(xs), ys)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self.mlp.eval()
        return self

    @torch.inference_mode()
    def score(self, users: np.ndarray) -> np.ndarray:
        mapped = self.mlp(torch.from_numpy(self.src_mf.user_embeddings()[users])).numpy()
        return mapped @ self.tgt_mf.item_embeddings().T + self.tgt_mf.item_bias()


@dataclass(frozen=True)
class CrossDomainConfig:
    """Per-domain bag encoders aligned by InfoNCE into a shared profile."""

    dim: int = 64
    """Profile size."""
    temperature: float = 0.1
    """InfoNCE temperature."""
    nce_weight: float = 0.5
    """Weight of the alignment loss."""
    epochs: int = 60
    """Maximum epochs."""
    batch_size: int = 128
    """Users per step."""
    learning_rate: float = 3e-3
    """Adam step size."""
    patience: int = 8
    """Epochs without a better validation NDCG@10 before stopping."""
    seed: int = 2020
    """Seed."""


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


class CrossDomain:
    """Source and target profiles; the target profile and the source profile both predict
    target items (softmax over target items), and InfoNCE pulls a user's two profiles
    together. A user cold in the target domain is served from the source profile."""

    config_class = CrossDomainConfig

    def __init__(self, config: CrossDomainConfig | None = None) -> None:
        self.config = config or CrossDomainConfig()

    def fit(self, split: CrossDomainSplit) -> CrossDomain:
        cfg = self.config
        seed_everything(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        src = split.matrix(split.train, split.source)
        tgt = split.matrix(split.train, split.target)
        self._src = src
        target_mask = torch.from_numpy(split.domain == split.target)
        users = np.flatnonzero(np.asarray(tgt.sum(axis=1)).ravel() > 0)
        self.module = CrossDomainModule(len(split.items), cfg.dim)
        opt = torch.optim.Adam(self.module.parameters(), lr=cfg.learning_rate)
        valid_truth = split.matrix(split.valid, split.target)
        best, best_state, since = -1.0, None, 0
        for _ in range(cfg.epochs):
            self.module.train()
            for idx in np.array_split(rng.permutation(users), max(1, len(users) // cfg.batch_size)):
                t_hist = torch.from_numpy(tgt[idx].toarray())
                s_hist = torch.from_numpy(src[idx].toarray())
                # one held-out target item per user is the label; it leaves the target bag
                label = torch.from_numpy(np.array([rng.choice(tgt[u].indices) for u in idx], dtype=np.int64))
                rows = torch.arange(len(idx))
                t_bag = t_hist.clone()
                t_bag[rows, label] = 0
                p_t = self.module.target_profile(t_bag)
                p_s = self.module.source_profile(s_hist)
                has_src = s_hist.sum(1) > 0
                loss = _masked_rec(self.module, p_t, t_hist, label, target_mask)
                if has_src.any():
                    loss = loss + _masked_rec(
                        self.module, p_s[has_src], t_hist[has_src], label[has_src], target_mask
                    )
                    a = nn.functional.normalize(p_s[has_src], dim=1)
                    b = nn.functional.normalize(p_t[has_src], dim=1)
                    sim = a @ b.T / cfg.temperature
                    tgt_idx = torch.arange(len(a))
                    nce = (
                        nn.functional.cross_entropy(sim, tgt_idx)
                        + nn.functional.cross_entropy(sim.T, tgt_idx)
                    ) / 2
                    loss = loss + cfg.nce_weight * nce
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            self.module.eval()
            score = evaluate_ranking(
                self.score,
                valid_truth,
                None,
                EvalConfig(ks=(10,)),
                item_mask=target_mask.numpy(),
                users=split.valid_users,
            ).metrics["ndcg@10"]
            if score > best:
                best, since = score, 0
                best_state = copy_state(self.module)
            else:
                since += 1
                if since >= cfg.patience:
                    break
        self.module.load_state_dict(best_state)
        self.module.eval()
        self.valid_ndcg = best
        return self

    @torch.inference_mode()
    def score(self, users: np.ndarray) -> np.ndarray:
        """Target-item scores from the source-domain profile."""
        hist = torch.from_numpy(self._src[users].toarray())
        return self.module.logits(self.module.source_profile(hist)).numpy()


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
