"""Recommenders that can score items nobody has interacted with, from their content.

All share ``fit(train, content)`` and ``score(users) -> (n, n_items)`` over every item, so
the same evaluator runs protocol (a) (cold items only) and (b) (all items).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from tqdm.auto import tqdm

from fusionrank.collab.base import Recommender, csr_from_arrays, csr_to_arrays
from fusionrank.collab.ease import ease_weights
from fusionrank.collab.trainer import copy_state, seed_everything
from fusionrank.encoders.vectors import unit_rows
from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking
from fusionrank.fusion.content import Content


class ContentRecommender(Recommender):
    """Base: ``fit(train, content)``; items are warm when they have a training interaction."""

    def fit(self, train: sp.csr_matrix, content: Content | None = None) -> ContentRecommender:  # type: ignore[override]
        self.train = sp.csr_matrix(train, dtype=np.float32)
        self.n_users, self.n_items = train.shape
        self.warm = np.asarray(self.train.sum(axis=0)).ravel() > 0
        self.content = content
        self._fit()
        return self

    def _fit(self) -> None:
        """Model-specific fitting after the common set-up."""


@dataclass(frozen=True)
class RandomConfig:
    seed: int = 2020
    """Seed of the random scores."""


class RandomScores(ContentRecommender):
    """Uniformly random scores (fixed per user and item by the seed)."""

    config_class = RandomConfig

    def _fit(self) -> None:
        self._scores = np.random.default_rng(self.config.seed).random(
            (self.n_users, self.n_items), dtype=np.float32
        )

    def score(self, users: np.ndarray) -> np.ndarray:
        return self._scores[self._check_users(users)]


@dataclass(frozen=True)
class GenrePopConfig:
    pass


class GenrePop(ContentRecommender):
    """score(c) = mean training popularity (interactions per item) of the genres of c."""

    config_class = GenrePopConfig

    def __init__(self, config=None, genres: sp.csr_matrix | None = None) -> None:
        super().__init__(config)
        self.genres = genres

    def _fit(self) -> None:
        if self.genres is None:
            raise ValueError("GenrePop needs the item x genre matrix (genres=...)")
        g = sp.csr_matrix(self.genres, dtype=np.float32)
        item_pop = np.asarray(self.train.sum(axis=0)).ravel()
        genre_items = np.asarray((g[self.warm]).sum(axis=0)).ravel()
        genre_pop = (g.T @ item_pop) / np.maximum(genre_items, 1)  # interactions per warm item of the genre
        n = np.asarray(g.sum(axis=1)).ravel()
        self._item = ((g @ genre_pop) / np.maximum(n, 1)).astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self._item, (len(self._check_users(users)), self.n_items))


@dataclass(frozen=True)
class ContentKNNConfig:
    pass


class ContentKNN(ContentRecommender):
    """score(u, c) = cos(mean content of u's history, content of c)."""

    config_class = ContentKNNConfig

    def _fit(self) -> None:
        self._x = unit_rows(self.content.vectors)

    def score(self, users: np.ndarray) -> np.ndarray:
        profile = unit_rows(np.asarray(self.train[self._check_users(users)] @ self._x))
        return profile @ self._x.T


@dataclass(frozen=True)
class EASEContentConfig:
    reg: float = 250.0
    """EASE lambda (on warm items)."""
    ridge: float = 10.0
    """Ridge strength of the map from content to EASE columns."""


class EASEContent(ContentRecommender):
    """EASE on warm items; a cold item's EASE column is predicted from its content by ridge
    regression (fitted on the warm items' columns), so warm and cold scores share a scale."""

    config_class = EASEContentConfig

    def _fit(self) -> None:
        warm = np.flatnonzero(self.warm)
        b = ease_weights(self.train[:, warm], self.config.reg)  # (n_warm, n_warm)
        x = self.content.vectors[warm].astype(np.float64)  # (n_warm, d)
        gram = x.T @ x + self.config.ridge * np.eye(x.shape[1])
        w = np.linalg.solve(gram, x.T @ b.T.astype(np.float64))  # (d, n_warm): content -> column
        columns = (self.content.vectors.astype(np.float64) @ w).T  # (n_warm, n_items)
        columns[:, warm] = b
        self._warm_idx = warm
        self._columns = columns.astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        x = self.train[self._check_users(users)][:, self._warm_idx]
        return np.asarray(x @ self._columns, dtype=np.float32)


@dataclass(frozen=True)
class TwoTowerConfig:
    """Two-tower hybrid: a bag-of-items user tower and a content item tower (+ ID dropout)."""

    dim: int = 128
    """Shared space size."""
    hidden: int = 512
    """Content tower hidden width."""
    dropout: float = 0.2
    """Dropout in the content tower."""
    id_dropout: float = 0.5
    """Probability of hiding a warm item's ID embedding in training (DropoutNet)."""
    epochs: int = 60
    """Maximum epochs."""
    batch_size: int = 1024
    """(user, item) pairs per step."""
    learning_rate: float = 2e-3
    """Adam step size."""
    weight_decay: float = 1e-5
    """Adam weight decay."""
    valid_share: float = 0.1
    """Share of warm items held out as pseudo-cold items to pick the epoch."""
    patience: int = 8
    """Epochs without improvement of the pseudo-cold NDCG@10 before stopping."""
    seed: int = 2020
    """Seed."""
    progress: bool = False
    """Show a progress bar."""


class TwoTowerModule(nn.Module):
    def __init__(self, n_items: int, content_dim: int, cfg: TwoTowerConfig) -> None:
        super().__init__()
        self.bag = nn.Embedding(n_items, cfg.dim)  # user tower: items a user has seen
        self.ids = nn.Embedding(n_items, cfg.dim)  # warm item ID part
        nn.init.normal_(self.bag.weight, std=0.05)
        nn.init.zeros_(self.ids.weight)
        self.tower = nn.Sequential(
            nn.Linear(content_dim, cfg.hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.dim + 1),
        )

    def items(self, content: torch.Tensor, use_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Item vectors (n, dim) and biases (n,); ``use_ids`` (n,) bool adds the ID part."""
        out = self.tower(content)
        vec, bias = out[:, :-1], out[:, -1]
        if use_ids is not None:
            vec = vec + self.ids.weight * use_ids[:, None]
        return vec, bias

    def users(self, history: torch.Tensor) -> torch.Tensor:
        """history (batch, n_items) 0/1 -> (batch, dim), a normalised bag of item vectors."""
        n = history.sum(dim=1, keepdim=True).clamp(min=1)
        return (history @ self.bag.weight) / n.sqrt()


class TwoTower(ContentRecommender):
    """Content -> CF space, trained with a full softmax over warm items on warm users.

    The user is a bag of the items they saw (the target item removed from its own bag);
    items are the content tower's output, plus a learned ID vector for warm items that is
    dropped at random in training, so the tower alone must rank well (cold items).
    """

    config_class = TwoTowerConfig

    def _fit(self) -> None:
        cfg = self.config
        seed_everything(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        warm = np.flatnonzero(self.warm)
        held = rng.choice(warm, size=max(1, int(cfg.valid_share * len(warm))), replace=False)
        fit_items = np.setdiff1d(warm, held)
        train = self.train.tolil(copy=True)
        train[:, held] = 0
        train = sp.csr_matrix(train)
        train.eliminate_zeros()
        valid = sp.csr_matrix(self.train[:, held])
        valid_truth = sp.csr_matrix(
            (valid.data, valid.indices, valid.indptr), shape=(self.n_users, len(held))
        )
        self.module = TwoTowerModule(self.n_items, self.content.vectors.shape[1], cfg)
        x = torch.from_numpy(self.content.vectors.astype(np.float32))
        opt = torch.optim.Adam(self.module.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        coo = train.tocoo()
        users, items = coo.row.astype(np.int64), coo.col.astype(np.int64)
        fit_mask = torch.zeros(self.n_items, dtype=torch.bool)
        fit_mask[torch.from_numpy(fit_items)] = True
        best, best_state, since = -1.0, None, 0
        bar = tqdm(range(cfg.epochs), desc="two-tower", disable=not cfg.progress)
        for _ in bar:
            self.module.train()
            for idx in np.array_split(rng.permutation(len(users)), max(1, len(users) // cfg.batch_size)):
                u, j = users[idx], items[idx]
                hist = torch.from_numpy(train[u].toarray())
                hist[torch.arange(len(idx)), torch.from_numpy(j)] = 0  # the target is not in its own bag
                keep_ids = (torch.rand(self.n_items) > cfg.id_dropout) & fit_mask
                vec, bias = self.module.items(x, keep_ids)
                logits = self.module.users(hist) @ vec.T + bias  # (batch, n_items)
                logits = logits.masked_fill(~fit_mask, -torch.inf)
                others = torch.from_numpy(train[u].toarray() > 0)
                others[torch.arange(len(idx)), torch.from_numpy(j)] = False
                logits = logits.masked_fill(others, -torch.inf)  # other positives are not negatives
                loss = nn.functional.cross_entropy(logits, torch.from_numpy(j))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            self._prepare_scoring(train, x, use_ids=fit_mask)
            score = evaluate_ranking(
                lambda us: self.score(us)[:, held], valid_truth, None, EvalConfig(ks=(10,))
            ).metrics["ndcg@10"]
            bar.set_postfix(valid=f"{score:.4f}")
            if score > best:
                best, since = score, 0
                best_state = copy_state(self.module)
            else:
                since += 1
                if since >= cfg.patience:
                    break
        self.module.load_state_dict(best_state)
        self.valid_ndcg = best
        self._prepare_scoring(self.train, x, use_ids=torch.from_numpy(self.warm) & fit_mask)

    @torch.inference_mode()
    def _prepare_scoring(self, history: sp.csr_matrix, x: torch.Tensor, use_ids: torch.Tensor) -> None:
        self.module.eval()
        vec, bias = self.module.items(x, use_ids)
        self._items, self._bias, self._history = vec, bias, history

    @torch.inference_mode()
    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        hist = torch.from_numpy(self._history[users].toarray())
        return (self.module.users(hist) @ self._items.T + self._bias).numpy()

    def item_vectors(self) -> np.ndarray:
        """Every item's vector in the shared space (cold items from content alone)."""
        return self._items.numpy()


@dataclass(frozen=True)
class HybridConfig:
    """EASE-anchored content tower fine-tuned with a ranking loss."""

    reg: float = 250.0
    """EASE lambda on warm items."""
    ridge: float = 10.0
    """Ridge strength of the linear start (the ease-content map)."""
    hidden: int = 256
    """Width of the non-linear residual of the tower."""
    dropout: float = 0.3
    """Dropout on the content input of the residual."""
    epochs: int = 100
    """Maximum fine-tuning passes over the users (one sampled target item each)."""
    batch_size: int = 128
    """Users per step."""
    learning_rate: float = 1e-3
    """Adam step size."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    valid_share: float = 0.1
    """Share of warm items held out as pseudo-cold items to choose the epoch count."""
    patience: int = 10
    """Epochs without improvement of the pseudo-cold NDCG@10 before stopping."""
    seed: int = 2020
    """Seed."""
    progress: bool = False
    """Show a progress bar."""


class ContentToColumn(nn.Module):
    """Content vector -> an EASE-style column of weights over the warm items:
    a linear map (started at the ridge solution) plus a non-linear residual (started at 0)."""

    def __init__(self, start: np.ndarray, hidden: int, dropout: float) -> None:
        super().__init__()
        d, n = start.shape
        self.linear = nn.Linear(d, n, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(start.T.astype(np.float32)))
        self.residual = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, n)
        )
        nn.init.zeros_(self.residual[-1].weight)
        nn.init.zeros_(self.residual[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.residual(x)  # (items, n_warm)


class Hybrid(ContentRecommender):
    """Content mapped into the collaborative space of EASE: an item's column of item-item
    weights is predicted from its content by a tower that starts at the linear ridge map
    (the ``ease-content`` reference) and is then trained on warm items with a softmax
    ranking loss (each user's history, the target removed, must rank the target first).
    Cold items get columns from content alone; warm items blend their EASE column and the
    content column. The epoch count is chosen on pseudo-cold warm items, then the model is
    refitted on all warm items."""

    config_class = HybridConfig

    def _fit(self) -> None:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        warm = np.flatnonzero(self.warm)
        held = np.sort(rng.choice(warm, size=max(1, int(cfg.valid_share * len(warm))), replace=False))
        fit_items = np.setdiff1d(warm, held)
        self.valid_ndcg, self.best_epochs = self._train(fit_items, held, cfg.epochs)
        self._train(warm, None, self.best_epochs)

    def _train(self, items: np.ndarray, held: np.ndarray | None, epochs: int) -> tuple[float, int]:
        cfg = self.config
        seed_everything(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        r = sp.csr_matrix(self.train[:, items])  # (users, n_fit)
        b = ease_weights(r, cfg.reg)
        x_all = self.content.vectors.astype(np.float64)
        x = x_all[items]
        start = np.linalg.solve(x.T @ x + cfg.ridge * np.eye(x.shape[1]), x.T @ b.T.astype(np.float64))
        module = ContentToColumn(start, cfg.hidden, cfg.dropout)
        opt = torch.optim.Adam(module.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        xt = torch.from_numpy(x.astype(np.float32))
        x_all_t = torch.from_numpy(x_all.astype(np.float32))
        active = np.flatnonzero(np.diff(r.indptr) > 0)

        def validate() -> float:
            module.eval()
            with torch.no_grad():
                cols = module(x_all_t[held]).numpy()  # (n_held, n_fit)
            truth = sp.csr_matrix(self.train[:, held])
            return evaluate_ranking(
                lambda us: np.asarray(r[us] @ cols.T), truth, None, EvalConfig(ks=(10,))
            ).metrics["ndcg@10"]

        best, best_epoch, best_state, since = (
            (validate(), 0, copy_state(module), 0) if held is not None else (float("nan"), epochs, None, 0)
        )
        bar = tqdm(range(1, epochs + 1), desc="hybrid", disable=not cfg.progress)
        for epoch in bar:
            module.train()
            for idx in np.array_split(rng.permutation(active), max(1, len(active) // cfg.batch_size)):
                # one target per user per pass, drawn from the user's history
                tgt_np = np.array(
                    [rng.choice(r.indices[r.indptr[u] : r.indptr[u + 1]]) for u in idx], np.int64
                )
                hist = torch.from_numpy(r[idx].toarray())
                rows, tgt = torch.arange(len(idx)), torch.from_numpy(tgt_np)
                others = hist.bool()
                hist[rows, tgt] = 0  # the target is not its own evidence
                others[rows, tgt] = False
                logits = hist @ module(xt).T  # (batch, n_fit)
                loss = nn.functional.cross_entropy(logits.masked_fill(others, -torch.inf), tgt)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if held is not None:
                score = validate()
                bar.set_postfix(valid=f"{score:.4f}")
                if score > best:
                    best, best_epoch, best_state, since = score, epoch, copy_state(module), 0
                else:
                    since += 1
                    if since >= cfg.patience:
                        break
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        with torch.no_grad():
            content_cols = module(x_all_t).numpy().T  # (n_fit, n_items)
        cols = content_cols.copy()
        cols[:, items] = 0.5 * (cols[:, items] + b)  # warm items: blend EASE and content columns
        self._items_idx, self._columns, self.module = items, cols.astype(np.float32), module
        return best, best_epoch

    def score(self, users: np.ndarray) -> np.ndarray:
        x = self.train[self._check_users(users)][:, self._items_idx]
        return np.asarray(x @ self._columns, dtype=np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"items": self._items_idx, "columns": self._columns, **csr_to_arrays("train", self.train)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._items_idx, self._columns = arrays["items"], arrays["columns"]
        self.train = csr_from_arrays("train", arrays)
