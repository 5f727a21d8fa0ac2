"""Two content models for cold items, each tuned on pseudo-cold items taken from train only:
content-aware EASE in one closed-form solve (``marec-content``, after MARec, RecSys 2024)
and a content-only student distilled from EASE's ranking (``aldi-content``, after ALDI,
SIGIR 2023).

Both read the content modalities their config names, score every item (warm items keep
their EASE columns, so the same evaluator runs protocols (a) and (b) of the cold-items
split), score new items from their content vectors, and save and load as arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from fusionrank.collab.ease import check_ease_memory, ease_weights
from fusionrank.collab.trainer import Trainable, TrainConfig, seed_everything, train_loop
from fusionrank.columns import TRAIN, VALID
from fusionrank.data.vectors import unit_rows
from fusionrank.errors import InvalidArgumentError
from fusionrank.fusion.content_models import ContentColumns, ContentRecommender, content_kernel
from fusionrank.fusion.validation import linear_scores, mixed_truth, pseudo_cold_items, validation_ndcg
from fusionrank.recommender import csr_from_arrays, csr_to_arrays

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


def modality_blocks(vectors: np.ndarray, dims: np.ndarray) -> list[np.ndarray]:
    """Fused content rows split back into their modalities (``dims`` columns each), each
    block L2-normalised: the fusion's 1/sqrt(#modalities) scale drops out, a missing
    modality stays a zero row."""
    edges = np.cumsum(np.concatenate([[0], np.asarray(dims, np.int64)]))
    x = np.asarray(vectors, np.float64)
    if x.ndim != 2 or x.shape[1] != edges[-1]:
        raise InvalidArgumentError(
            f"content vectors must have {int(edges[-1])} columns (the fitted modalities, fused), "
            f"got shape {x.shape}"
        )
    return [unit_rows(x[:, a:b]) for a, b in zip(edges[:-1], edges[1:])]


def _check_positive(name: str, values: tuple[float, ...], allow_zero: bool = False) -> None:
    bad = not values or (min(values) < 0 if allow_zero else min(values) <= 0)
    if bad:
        sign = ">= 0" if allow_zero else "> 0"
        raise InvalidArgumentError(f"{name} must be a non-empty tuple of values {sign}, got {values}")


def _content_dims(split: Split, modalities: tuple[str, ...]) -> np.ndarray:
    """Columns of each modality's block in the fused content (as ``load_content`` fuses them)."""
    return np.asarray([split.content(m)[0].shape[1] for m in modalities], np.int64)


# --- content-aware EASE in closed form (MARec) ------------------------------------------------


@dataclass(frozen=True)
class MARecContentConfig:
    """EASE whose Gram matrix is completed by content similarity (one solve per setting)."""

    reg: float = 250.0
    """EASE lambda."""
    alphas: tuple[float, ...] = (0.1, 1.0, 10.0)
    """Strengths of the content alignment term tried (the one that ranks pseudo-cold items
    best is kept; a single value skips the choice)."""
    tails: tuple[float, ...] = (0.1, 0.3)
    """Share of the warm items counted as unpopular, tried: an item below that popularity
    quantile p gets alignment weight (p - pop) / p, an item nobody saw weight 1."""
    kernels: tuple[float, ...] = (1.0, 2.0, 4.0)
    """Sharpness values tried for each modality's similarity exp(s * (cos - 1))."""
    ridge: float = 1.0
    """Ridge of the kernel smoother that turns a similarity row into weights over warm items."""
    zero_weight: float = 0.2
    """Weight of the empty cells (positives weigh 1) in the regression that fits the
    modalities' weights on warm data."""
    valid_share: float = 0.2
    """Share of warm items held out as pseudo-cold items to choose the settings."""
    seed: int = 2020
    """Seed of the pseudo-cold items."""
    modalities: tuple[str, ...] = ("text",)
    """Content modalities (text, image, clip, kg, genres)."""
    calibrate: bool = True
    """Choose α on a mixed ranking: pseudo-cold items ranked together with the warm ones,
    against a truth that holds both (their training interactions and the split's valid
    interactions on warm items). α barely moves the order among cold items; it sets how
    cold scores compare with warm ones. False, or a split without valid interactions:
    α is chosen with the sharpness and tail, on pseudo-cold items alone."""

    def __post_init__(self) -> None:
        if self.reg <= 0 or self.ridge <= 0:
            raise InvalidArgumentError(f"reg and ridge must be > 0, got {self.reg} and {self.ridge}")
        _check_positive("alphas", self.alphas)
        _check_positive("kernels", self.kernels)
        if not self.tails or min(self.tails) <= 0 or max(self.tails) >= 1:
            raise InvalidArgumentError(f"tails must be shares in (0, 1), got {self.tails}")
        if self.zero_weight < 0:
            raise InvalidArgumentError(f"zero_weight must be >= 0, got {self.zero_weight}")


@dataclass
class _Alignment:
    """What one sharpness value gives on a set of warm items: per modality the smoother
    (K + ridge I)^-1 and the modality weight; the co-occurrences and C @ G."""

    smoothers: list[np.ndarray]
    weights: np.ndarray
    gram: np.ndarray
    gram_g: np.ndarray


class MARecContent(ContentColumns):
    """Content-aware EASE in closed form, after MARec (Monteil et al., RecSys 2024).

    With C = XᵀX over the warm items, G = Σ_m β_m G_m the content similarity and D a
    diagonal that weighs unpopular items up, the item weights are one EASE-like solve,

        A = C + α C G D,   B = (A + λI)⁻¹ A   (zero diagonal, as EASE),

    so an item's column is completed by the co-occurrences of the items its content
    resembles, and an item nobody saw (a zero column of X, weight 1 in D) gets its whole
    column that way: b_j = α (A + λI)⁻¹ C g_j. The same formula scores new items.

    Adaptations, measured on pseudo-cold items of ml-100k: MARec's G_m is a smoothed cosine
    of metadata; on dense sentence embeddings cosines are close to uniform and that G
    ranked pseudo-cold items at 0.23 NDCG@10 against 0.30 for a kernel ridge map, so here
    G_m is the kernel smoother (K_m + ridge I)⁻¹ K_m of k = exp(s(cos - 1)) over the warm
    items (diagonal zeroed inside the warm block). The modality weights β_m are fitted on
    warm data as in MARec, a weighted least squares of X on the X G_m (empty cells weigh
    ``zero_weight``), kept non-negative. D follows MARec's ramp: (p - pop)/p below the
    ``tail`` popularity quantile p, 0 above. α, the tail and the sharpness are chosen on
    pseudo-cold warm items (training data only); ``history["valid"]`` lists every setting.
    """

    config_class = MARecContentConfig

    def _fit_content(self, split: Split) -> None:
        cfg = self.config
        self._dims = _content_dims(split, cfg.modalities)
        units = modality_blocks(self._vectors(), self._dims)
        warm = np.flatnonzero(self.warm)
        settings = [(s, a, t) for s in cfg.kernels for a in cfg.alphas for t in cfg.tails]
        sharpness, alpha, tail = settings[0]
        if len(settings) > 1:
            held = pseudo_cold_items(warm, cfg.valid_share, cfg.seed)
            fit = np.setdiff1d(warm, held)
            history = sp.csr_matrix(self.train[:, fit], dtype=np.float64)
            truth = sp.csr_matrix(self.train[:, held])
            tried = []
            for s in cfg.kernels:
                al = self._align(units, fit, s)
                ks = [content_kernel(u[fit], u[held], s) for u in units]
                for a in cfg.alphas:
                    for t in cfg.tails:
                        p_inv, _ = self._solve(al, fit, a, t, with_b=False)
                        cols = self._new_columns(p_inv, al, a, ks)
                        tried.append((s, a, t, validation_ndcg(linear_scores(history, cols), truth)))
            sharpness, alpha, tail, _ = max(tried, key=lambda r: r[3])  # the first best on ties
            self.history = {"valid": tried, "kernel": sharpness, "alpha": alpha, "tail": tail}
            valid = split.matrix(VALID)
            if cfg.calibrate and len(cfg.alphas) > 1 and valid.nnz:
                mixed = self._mixed_alphas(units, fit, held, valid, sharpness, tail)
                alpha = max(mixed, key=lambda r: r[1])[0]
                self.history |= {"mixed": mixed, "alpha": alpha}
        al = self._align(units, warm, sharpness)
        p_inv, b = self._solve(al, warm, alpha, tail, with_b=True)
        # the map of a new item's content kernels (all modalities stacked) to its column
        m = alpha * (p_inv @ al.gram)
        self._map = np.concatenate([w * (m @ sm) for w, sm in zip(al.weights, al.smoothers)], axis=1)
        self._units = np.concatenate([u[warm] for u in units], axis=1)
        self._warm_idx, self._sharpness = warm, np.float64(sharpness)
        self.history = {**(self.history or {}), "modality_weights": al.weights.tolist()}
        columns = self._content_columns(self._vectors())
        columns[:, warm] = b
        self._columns = columns.astype(np.float32)

    def _mixed_alphas(
        self,
        units: list[np.ndarray],
        fit: np.ndarray,
        held: np.ndarray,
        valid: sp.csr_matrix,
        sharpness: float,
        tail: float,
    ) -> list[tuple[float, float]]:
        """(α, NDCG@10) of ranking the fit and the pseudo-cold items together: the truth is
        the valid interactions on fit items plus every known interaction of the held ones."""
        history, truth, exclude = mixed_truth(self.train, valid, fit, held)
        al = self._align(units, fit, sharpness)
        ks = [content_kernel(u[fit], u[held], sharpness) for u in units]
        out = []
        for a in self.config.alphas:
            p_inv, b = self._solve(al, fit, a, tail, with_b=True)
            assert b is not None
            cols = np.concatenate([b, self._new_columns(p_inv, al, a, ks)], axis=1)
            out.append((a, validation_ndcg(linear_scores(history, cols), truth, exclude)))
        return out

    def _align(self, units: list[np.ndarray], items: np.ndarray, sharpness: float) -> _Alignment:
        """Smoothers, modality weights and co-occurrences over ``items`` (warm) for one sharpness."""
        x = sp.csr_matrix(self.train[:, items], dtype=np.float64)
        gram = (x.T @ x).toarray()
        eye = np.eye(len(items))
        smoothers, sims = [], []
        for u in units:
            k = content_kernel(u[items], u[items], sharpness)
            smoother = np.linalg.inv(k + self.config.ridge * eye)
            g = smoother @ k
            np.fill_diagonal(g, 0.0)
            smoothers.append(smoother)
            sims.append(g)
        weights = self._modality_weights(x, sims)
        g = sum((w * s for w, s in zip(weights, sims)), np.zeros_like(gram))
        return _Alignment(smoothers, weights, gram, gram @ g)

    def _modality_weights(self, x: sp.csr_matrix, sims: list[np.ndarray]) -> np.ndarray:
        """β: weighted least squares of X on the X G_m, a chunk of users at a time, clipped
        at 0 (equal weights if none is positive)."""
        n = len(sims)
        lhs, rhs = np.zeros((n, n)), np.zeros(n)
        for start in range(0, x.shape[0], 1024):
            y = x[start : start + 1024].toarray()
            w = self.config.zero_weight + (1.0 - self.config.zero_weight) * (y > 0)
            feats = [y @ s for s in sims]
            for i in range(n):
                rhs[i] += float((w * feats[i] * y).sum())
                for j in range(i, n):
                    lhs[i, j] = lhs[j, i] = lhs[i, j] + float((w * feats[i] * feats[j]).sum())
        weights = np.linalg.lstsq(lhs + 1e-12 * np.eye(n), rhs, rcond=None)[0]
        weights = np.clip(weights, 0.0, None)
        return weights if weights.sum() > 0 else np.ones(n)

    def _solve(
        self, al: _Alignment, items: np.ndarray, alpha: float, tail: float, with_b: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(A + λI)⁻¹ and, with ``with_b``, the zero-diagonal weights B over ``items``."""
        pop = np.asarray(self.train[:, items].getnnz(axis=0), np.float64)  # interactions per item
        p = max(float(np.quantile(pop, tail)), 1.0)
        d = np.clip((p - pop) / p, 0.0, None)
        a = al.gram + alpha * al.gram_g * d[None, :]
        p_inv = np.linalg.inv(a + self.config.reg * np.eye(len(items)))
        if not with_b:
            return p_inv, None
        b = p_inv @ a
        b -= p_inv * (np.diag(b) / np.diag(p_inv))[None, :]
        return p_inv, b

    @staticmethod
    def _new_columns(
        p_inv: np.ndarray, al: _Alignment, alpha: float, kernels: list[np.ndarray]
    ) -> np.ndarray:
        """Columns of items nobody saw, from their kernels to the fitted items (one per modality)."""
        g = sum(w * (sm @ k) for w, sm, k in zip(al.weights, al.smoothers, kernels))
        return alpha * (p_inv @ (al.gram @ g))

    def _content_columns(self, vectors: np.ndarray) -> np.ndarray:
        s = float(self._sharpness)
        units = modality_blocks(vectors, self._dims)
        edges = np.cumsum(np.concatenate([[0], self._dims]))
        kernels = [content_kernel(self._units[:, a:b], u, s) for u, a, b in zip(units, edges[:-1], edges[1:])]
        return self._map @ np.concatenate(kernels, axis=0)  # (n_warm, n_new)

    def _map_state(self) -> dict[str, np.ndarray]:
        return {
            "map": self._map,
            "units": self._units,
            "dims": self._dims,
            "sharpness": np.asarray([self._sharpness], np.float64),
        }

    def _load_map(self, arrays: dict[str, np.ndarray]) -> None:
        self._map, self._units, self._dims = arrays["map"], arrays["units"], arrays["dims"]
        self._sharpness = np.float64(np.asarray(arrays["sharpness"]).reshape(-1)[0])


# --- a content-only student distilled from EASE's ranking (ALDI) ------------------------------


@dataclass(frozen=True)
class ALDIContentConfig(TrainConfig):
    """A content tower distilled from EASE: pairwise ranking + score matching."""

    reg: float = 250.0
    """The teacher's EASE lambda."""
    dim: int = 64
    """Size of the student's user and item vectors."""
    hidden: int = 256
    """Hidden width of the content tower."""
    dropout: float = 0.1
    """Dropout in the content tower (training only)."""
    pairs: int = 32
    """Ranking pairs per user and step: a positive among the teacher's ``top`` items, a
    uniformly drawn item it ranks lower."""
    top: int = 50
    """The teacher's top items a pair's positive is drawn from."""
    match_weights: tuple[float, ...] = (1.0, 10.0, 100.0)
    """Weights of the score-matching term tried: the one that ranks pseudo-cold items best
    is kept, with its best epoch (``validation=False``: after exactly ``epochs``)."""
    valid_share: float = 0.2
    """Share of warm items held out as pseudo-cold items to choose the weight and the epochs."""
    users: Literal["teacher", "learned"] = "teacher"
    """How the student sees a user: ``teacher``, x_u L with L the top-``dim`` factor of
    EASE's B = L R (its SVD, fixed); ``learned``, x_u W / sqrt(|x_u|) with W trained."""
    modalities: tuple[str, ...] = ("text",)
    """Content modalities (text, image, clip, kg, genres)."""
    epochs: int = 60
    batch_size: int = 128
    """Users per step."""
    learning_rate: float = 2e-3
    patience: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dim < 1 or self.hidden < 1 or self.pairs < 1 or self.top < 1:
            raise InvalidArgumentError("dim, hidden, pairs and top must be >= 1")
        if not 0 <= self.dropout < 1:
            raise InvalidArgumentError(f"dropout must be in [0, 1), got {self.dropout}")
        _check_positive("match_weights", self.match_weights, allow_zero=True)


class StudentModule(nn.Module):
    """User vectors x_u W (the teacher's fixed factor, or a learned map scaled by
    1/sqrt(|x_u|)) and item vectors f(content) with a bias, from content alone."""

    def __init__(self, n_items: int, content_dim: int, cfg: ALDIContentConfig) -> None:
        super().__init__()
        self.user_map = nn.Parameter(torch.randn(n_items, cfg.dim) * 0.05)
        self.scaled = cfg.users == "learned"
        self.tower = nn.Sequential(
            nn.Linear(content_dim, cfg.hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.dim + 1),
        )

    def users(self, history: torch.Tensor) -> torch.Tensor:
        if not self.scaled:  # the teacher's factor, at the teacher's scale
            return history @ self.user_map
        n = history.sum(dim=1, keepdim=True).clamp(min=1)
        return (history @ self.user_map) / n.sqrt()

    def items(self, content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.tower(content)
        return out[:, :-1], out[:, -1]


class ALDIContent(ContentRecommender, Trainable):
    """A content-only student distilled from EASE's ranking, after ALDI (Huang et al.,
    SIGIR 2023): warm items keep EASE's scores; an item nobody saw is scored by the student.

    The teacher is EASE on the warm items, t_u = x_u B. ALDI's teacher is a factor model
    whose user vectors the student shares; EASE has none, so the student sees a user as
    EASE does, through their history: u = x_u L, with B ≈ L R the top-``dim`` factors of
    B's SVD (fixed; ``users="learned"`` trains a W instead, u = x_u W / sqrt(|x_u|), which
    ranked pseudo-cold items of ml-100k lower). An item is f(content) (a small MLP, with a
    bias b(content)), and the student's score is u · f(c_i) + b(c_i): the item side is
    content alone, so it plays R's part for items EASE never saw. The loss, over the warm
    items, is ALDI's ranking alignment, a pairwise logistic loss on pairs the teacher
    orders (a positive among its ``top`` items, a lower-ranked random item), plus its
    rating alignment, the squared gap to the teacher's scores with a weight γ, which also
    puts the student's scores on EASE's scale so that warm and cold scores mix.

    γ and the epoch count are chosen on pseudo-cold warm items (training data only: the
    teacher and the student never see them; NDCG@10 of ranking them); the student is then
    trained again on every warm item for that many epochs. ``history`` lists each γ's
    validation curve and the choice. Seeded and bitwise repeatable on CPU.
    """

    config_class = ALDIContentConfig
    module: StudentModule

    def _fit(self, split: Split) -> None:
        # the teacher is EASE over every warm item: refuse what its dense matrices cannot hold
        check_ease_memory(int((split.matrix(TRAIN).getnnz(axis=0) > 0).sum()))
        super()._fit(split)

    def _fit_content(self, split: Split) -> None:
        cfg = self.config
        warm = np.flatnonzero(self.warm)
        held = pseudo_cold_items(warm, cfg.valid_share, cfg.seed)
        fit = np.setdiff1d(warm, held)
        x = torch.from_numpy(self._vectors().astype(np.float32))
        history_fit = sp.csr_matrix(self.train[:, fit], dtype=np.float32)
        truth = sp.csr_matrix(self.train[:, held])

        def validate() -> float:
            scores = self._user_part(history_fit) @ self._student_columns(x[held])
            return validation_ndcg(lambda us: scores[us], truth)

        tried = []
        for gamma in cfg.match_weights:
            self._prepare(fit, gamma, x)
            if cfg.validation:  # early stop on the pseudo-cold items
                run = train_loop(self, cfg, validate, desc=self.name).as_dict()
            else:  # the epoch count is given (a refit): only the weight is chosen, at its end
                run = train_loop(self, cfg, None, desc=self.name).as_dict()
                run["valid"] = [(run["epochs"], validate())]
                run["best_valid"] = run["valid"][0][1]
            tried.append({"match_weight": gamma, **run})
        best = max(tried, key=lambda r: r["best_valid"])  # the first best on ties
        gamma, epochs = best["match_weight"], max(int(best["best_epoch"]), 1)
        self._prepare(warm, gamma, x)
        train_loop(self, cfg, None, epochs=epochs, desc=self.name)
        self.history = {
            "valid": [(r["match_weight"], r["best_epoch"], r["best_valid"]) for r in tried],
            "curves": [r["valid"] for r in tried],
            "match_weight": gamma,
            "best_epoch": epochs,
        }
        self._teacher = ease_weights(self.train[:, warm], cfg.reg)
        self._warm_idx, self._content = warm, x
        self._prepare_scoring()

    # --- training -------------------------------------------------------------------------
    def _prepare(self, items: np.ndarray, gamma: float, x: torch.Tensor) -> None:
        """A new student (seeded) to train on ``items``, with EASE on them as the teacher."""
        cfg = self.config
        seed_everything(cfg.seed)
        self.module = StudentModule(self.n_items, x.shape[1], cfg)
        self._fit_items, self._gamma, self._fit_content_x = items, gamma, x[items]
        train = sp.csr_matrix(self.train[:, items], dtype=np.float32)
        self._fit_history = train
        self._fit_teacher = torch.from_numpy(ease_weights(train, cfg.reg))
        if cfg.users == "teacher":
            u, sv, _ = torch.linalg.svd(self._fit_teacher.double())
            factor = (u[:, : cfg.dim] * sv[: cfg.dim].sqrt()).float()
            with torch.no_grad():
                self.module.user_map.zero_()
                self.module.user_map[torch.from_numpy(items), : factor.shape[1]] = factor
            self.module.user_map.requires_grad_(False)
        self._fit_users = np.flatnonzero(train.getnnz(axis=1) > 0)

    def training_batches(self, rng: np.random.Generator, config: Any) -> Iterator[Any]:
        users = rng.permutation(self._fit_users)
        n, top = len(self._fit_items), min(self.config.top, len(self._fit_items))
        for start in range(0, len(users), config.batch_size):
            u = users[start : start + config.batch_size]
            shape = (len(u), self.config.pairs)
            yield u, rng.integers(0, top, size=shape), rng.integers(0, n, size=shape)

    def batch_loss(self, batch: Any) -> torch.Tensor:
        u, pos_rank, neg = batch
        rows = self._fit_history[u]
        teacher = torch.from_numpy(rows @ self._fit_teacher.numpy())  # (b, n_fit)
        vec, bias = self.module.items(self._fit_content_x)
        student = self._user_part_torch(rows) @ vec.T + bias  # (b, n_fit)
        order = torch.argsort(teacher, dim=1, descending=True, stable=True)
        pos = torch.gather(order, 1, torch.from_numpy(pos_rank))
        neg_t = torch.from_numpy(neg)
        t_gap = torch.gather(teacher, 1, pos) - torch.gather(teacher, 1, neg_t)
        s_gap = torch.gather(student, 1, pos) - torch.gather(student, 1, neg_t)
        keep = (t_gap > 0).float()
        rank = (nn.functional.softplus(-s_gap) * keep).sum() / keep.sum().clamp(min=1.0)
        return rank + self._gamma * ((student - teacher) ** 2).mean()

    def _user_part_torch(self, history: sp.csr_matrix) -> torch.Tensor:
        dense = torch.zeros((history.shape[0], self.n_items), dtype=torch.float32)
        coo = history.tocoo()
        dense[coo.row, torch.from_numpy(self._fit_items[coo.col])] = torch.from_numpy(coo.data)
        return self.module.users(dense)

    @torch.inference_mode()
    def _user_part(self, history: sp.csr_matrix) -> np.ndarray:
        """Student user vectors (n, dim + 1, with a 1 for the bias) of histories over the fit items."""
        users = self._user_part_torch(history).numpy()
        return np.concatenate([users, np.ones((len(users), 1), np.float32)], axis=1)

    @torch.inference_mode()
    def _student_columns(self, content: torch.Tensor) -> np.ndarray:
        """(dim + 1, n) item vectors with their bias, from content."""
        vec, bias = self.module.items(content)
        return np.concatenate([vec.numpy(), bias.numpy()[:, None]], axis=1).T

    # --- scoring --------------------------------------------------------------------------
    def _prepare_scoring(self) -> None:
        self.module.eval()
        self._fit_items = self._warm_idx
        self._item_cols = self._student_columns(self._content)  # (dim + 1, n_items)

    def _student(self, users: np.ndarray) -> np.ndarray:
        return self._user_part(sp.csr_matrix(self.train[users][:, self._warm_idx], dtype=np.float32))

    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        out = self._student(users) @ self._item_cols
        x = self.train[users][:, self._warm_idx]
        out[:, self._warm_idx] = np.asarray(x @ self._teacher)
        return out.astype(np.float32)

    def score_content(self, users: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        content = torch.from_numpy(np.asarray(vectors, np.float32))
        if content.ndim != 2 or content.shape[1] != self._content.shape[1]:
            raise InvalidArgumentError(
                f"content vectors must have {self._content.shape[1]} columns (the fitted modalities, "
                f"fused), got shape {tuple(content.shape)}"
            )
        return (self._student(users) @ self._student_columns(content)).astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        """The student's item vectors f(content) of every item (its bias left out)."""
        return np.ascontiguousarray(self._item_cols[:-1].T)

    def state(self) -> dict[str, np.ndarray]:
        module = {f"module.{k}": v.detach().numpy() for k, v in self.module.state_dict().items()}
        return {
            **module,
            "teacher": self._teacher,
            "warm": self._warm_idx,
            "content": self._content.numpy(),
            **csr_to_arrays("train", self.train),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.train = csr_from_arrays("train", arrays)
        self._teacher, self._warm_idx = arrays["teacher"], arrays["warm"]
        self._content = torch.from_numpy(arrays["content"].copy())
        self.module = StudentModule(self.n_items, self._content.shape[1], self.config)
        self.module.load_state_dict(
            {k[7:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("module.")}
        )
        self._prepare_scoring()
