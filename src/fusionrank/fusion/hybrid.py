"""The hybrid content model: content mapped into EASE's item-item space, fine-tuned with a
ranking loss, so that items nobody has interacted with get collaborative-style scores."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from fusionrank.collab.ease import ease_weights
from fusionrank.collab.torch_base import ranking_validator
from fusionrank.collab.trainer import Trainable, TrainConfig, seed_everything, train_loop
from fusionrank.columns import VALID
from fusionrank.errors import InvalidArgumentError
from fusionrank.fusion.content_models import ContentRecommender
from fusionrank.fusion.validation import mixed_factors, pseudo_cold_items
from fusionrank.recommender import csr_from_arrays, csr_to_arrays

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


@dataclass(frozen=True)
class HybridConfig(TrainConfig):
    """EASE-anchored content tower fine-tuned with a ranking loss."""

    reg: float = 250.0
    """EASE lambda on warm items."""
    ridge: float = 10.0
    """Ridge strength of the linear start (the ease-content map)."""
    hidden: int = 256
    """Width of the non-linear residual of the tower."""
    dropout: float = 0.3
    """Dropout on the content input of the residual."""
    modalities: tuple[str, ...] = ("text",)
    """Content modalities (text, image, clip, kg, genres)."""
    valid_share: float = 0.1
    """Share of warm items held out as pseudo-cold items to choose the epoch count."""
    epochs: int = 100
    """Maximum fine-tuning passes over the users (one sampled target item each); 0 keeps
    the ridge-map start (what validation chooses when fine-tuning only moves away from it)."""
    batch_size: int = 128
    """Users per step."""
    blend: Literal["fixed", "valid"] = "valid"
    """How warm and cold columns are put together. ``valid``: the content columns are scaled
    to the EASE columns' norm; a warm item's column is its EASE column plus ``warm_blend``
    times its content column (the weight chosen on the split's valid interactions) and a
    cold item's ``cold_scales`` times its content column (the factor chosen as
    ``cold_choice`` says). ``fixed``: a warm item's column is the mean of its EASE column
    and its content column, a cold item's its content column, as the tower leaves them (a
    fine-tuned tower's content columns can be several times EASE's scale and swamp the warm
    ranking; kept to reproduce older runs)."""
    warm_blend: tuple[float, ...] = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0)
    """``blend: valid``: weights tried for a warm item's content column (0: EASE's column)."""
    cold_scales: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 0.3, 0.1, 0.0)
    """``blend: valid``: factors tried for a cold item's content column (1: EASE's norm; a
    content column is smoother than an EASE column, so at the same norm its item scores
    lower). With one value each, without validation, or without valid rows, the first
    values are used (a refit is given the chosen ones)."""
    cold_choice: Literal["mixed", "valid"] = "mixed"
    """What chooses the cold factor. ``mixed``: a ranking of warm and pseudo-cold items
    together (the tower that chose the epochs never saw the pseudo-cold items; the truth
    holds every known interaction of theirs and the valid interactions of the others): a
    catalogue that takes in new items which will be used as the old ones are. ``valid``:
    the split's valid interactions, where the items without training interactions are what
    they are in this split (on a random split, the catalogue's rare tail, which valid keeps
    out of the top 10 with factor 0)."""

    MIN_EPOCHS: ClassVar[int] = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("warm_blend", "cold_scales"):
            values = getattr(self, name)
            if not values or min(values) < 0:
                raise InvalidArgumentError(f"{name} must be weights >= 0, got {list(values)}")


def _norm_ratio(ease_b: np.ndarray, content: np.ndarray) -> float:
    """The factor that gives content columns the EASE columns' norm."""
    return float(np.linalg.norm(ease_b) / max(float(np.linalg.norm(content)), 1e-12))


@dataclass
class _PseudoCold:
    """What the epoch-choosing run leaves: its fit and pseudo-cold (held) items, EASE's
    weights over the fit items and the tower's content columns for every item (the held
    ones from content alone, as new items get them)."""

    fit: np.ndarray
    held: np.ndarray
    ease_b: np.ndarray
    content: np.ndarray

    def cold_factors(
        self, train: sp.csr_matrix, valid: sp.csr_matrix, warm_weight: float, factors: tuple[float, ...]
    ) -> list[tuple[float, float]]:
        """(factor, NDCG@10) of ranking the fit and the held items together
        (``mixed_factors``), content columns scaled to EASE's norm as in ``blend: valid``."""
        content = _norm_ratio(self.ease_b, self.content[:, self.fit]) * self.content
        warm = self.ease_b + warm_weight * content[:, self.fit]
        return mixed_factors(train, valid, self.fit, self.held, warm, content[:, self.held], factors)


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
        last = cast(nn.Linear, self.residual[-1])
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.residual(x)  # (items, n_warm)


class _ColumnTraining(Trainable):
    """One fine-tuning run of the tower on ``items`` (the loop's view of the hybrid)."""

    def __init__(self, r: sp.csr_matrix, x: torch.Tensor, module: ContentToColumn, batch_size: int) -> None:
        self.r, self.x, self.module, self.batch_size = r, x, module, batch_size
        self.active = np.flatnonzero(np.diff(r.indptr) > 0)

    def training_batches(self, rng: np.random.Generator, config: Any) -> Iterator[tuple[torch.Tensor, ...]]:
        r = self.r
        for idx in np.array_split(rng.permutation(self.active), max(1, len(self.active) // self.batch_size)):
            # one target per user per pass, drawn from the user's history
            tgt = np.array([rng.choice(r.indices[r.indptr[u] : r.indptr[u + 1]]) for u in idx], np.int64)
            yield torch.from_numpy(r[idx].toarray()), torch.from_numpy(tgt)

    def batch_loss(self, batch: Any) -> torch.Tensor:
        hist, tgt = batch
        rows = torch.arange(len(tgt))
        others = hist.bool()
        hist[rows, tgt] = 0  # the target is not its own evidence
        others[rows, tgt] = False
        logits = hist @ self.module(self.x).T  # (batch, n_fit)
        return nn.functional.cross_entropy(logits.masked_fill(others, -torch.inf), tgt)


class Hybrid(ContentRecommender):
    """Content mapped into the collaborative space of EASE: an item's column of item-item
    weights is predicted from its content by a tower that starts at the linear ridge map
    (the ``ease-content`` reference) and is then trained on warm items with a softmax
    ranking loss (each user's history, the target removed, must rank the target first).
    Cold items get columns from content alone; warm items blend their EASE column and the
    content column (``blend``). The epoch count is chosen on pseudo-cold warm items
    (``validation``), then the model is refitted on all warm items; with ``blend: valid`` the
    blend's weights are chosen on the split's valid interactions and kept in
    ``history["chosen"]``, so a refit on train + valid reuses them as it reuses the epochs."""

    config_class = HybridConfig
    _ease_b: np.ndarray
    """EASE's weights over the items of the last ``_train`` (read by ``blend: valid``)."""
    _content: np.ndarray
    """The tower's content columns for every item, from the last ``_train``."""

    def _fit_content(self, split: Split) -> None:
        cfg = self.config
        warm = np.flatnonzero(self.warm)
        epochs = cfg.epochs
        pseudo = None
        if cfg.validation:
            held = pseudo_cold_items(warm, cfg.valid_share, cfg.seed)
            fit = np.setdiff1d(warm, held)
            history = self._train(fit, held, epochs)
            epochs = history.best_epoch
            self.history = history.as_dict()
            if cfg.blend == "valid" and cfg.cold_choice == "mixed" and len(cfg.cold_scales) > 1:
                pseudo = _PseudoCold(fit, held, self._ease_b, self._content)  # kept for the cold factor
        self._train(warm, None, epochs)
        if cfg.blend == "valid":
            self._columns = self._valid_blend(split, pseudo)
        del self._ease_b, self._content  # the columns hold what scoring needs

    def _valid_blend(self, split: Split, pseudo: _PseudoCold | None) -> np.ndarray:
        """``blend: valid``: every item's column, the content columns scaled to EASE's norm,
        warm ones plus their EASE column. The warm weight is chosen on the split's valid
        interactions (``history["blend"]``), then the cold factor as ``cold_choice`` says
        (``history["cold"]``)."""
        cfg = self.config
        items, b = self._items_idx, self._ease_b
        cold = np.setdiff1d(np.arange(self.n_items), items)
        scale = _norm_ratio(b, self._content[:, items])
        content = scale * self._content

        def columns(warm_weight: float, cold_factor: float) -> np.ndarray:
            cols = np.empty_like(content, dtype=np.float32)
            cols[:, items] = b + warm_weight * content[:, items]
            cols[:, cold] = cold_factor * content[:, cold]
            return cols

        w, f = cfg.warm_blend[0], cfg.cold_scales[0]
        validate = None
        if cfg.validation:
            validate = ranking_validator(self, split, cfg.valid_metric, cfg.valid_users, cfg.seed)

        def on_valid(pairs: list[tuple[float, float]]) -> list[float]:
            """Each (warm weight, cold factor) pair's figure on the split's valid interactions."""
            assert validate is not None  # noqa: S101 - called only with valid rows
            out = []
            for pair in pairs:
                self._columns = columns(*pair)  # what ``score`` reads
                out.append(validate())
            return out

        if validate is not None and len(cfg.warm_blend) > 1:
            # cold items out of the ranking: the weight is the warm items' choice
            tried = list(zip(cfg.warm_blend, on_valid([(weight, 0.0) for weight in cfg.warm_blend])))
            w = max(tried, key=lambda t: t[1])[0]  # the first best on ties
            self.history = {**(self.history or {}), "blend": tried}
        if validate is not None and len(cfg.cold_scales) > 1:
            if pseudo is not None:  # cold_choice: mixed
                cold_tried = pseudo.cold_factors(self.train, split.matrix(VALID), w, cfg.cold_scales)
            else:
                cold_tried = list(zip(cfg.cold_scales, on_valid([(w, c) for c in cfg.cold_scales])))
            f = max(cold_tried, key=lambda t: t[1])[0]
            self.history = {**(self.history or {}), "cold": cold_tried}
        self.history = {**(self.history or {}), "chosen": {"warm_blend": [w], "cold_scales": [f]}}
        self._content_scale = scale * f
        return columns(w, f)

    def _train(self, items: np.ndarray, held: np.ndarray | None, epochs: int) -> Any:
        cfg = self.config
        seed_everything(cfg.seed)
        r = sp.csr_matrix(self.train[:, items])  # (users, n_fit)
        b = ease_weights(r, cfg.reg)
        x_all = self._vectors().astype(np.float64)
        x = x_all[items]
        start = np.linalg.solve(x.T @ x + cfg.ridge * np.eye(x.shape[1]), x.T @ b.T.astype(np.float64))
        module = ContentToColumn(start, cfg.hidden, cfg.dropout)
        x_all_t = torch.from_numpy(x_all.astype(np.float32))
        job = _ColumnTraining(r, torch.from_numpy(x.astype(np.float32)), module, cfg.batch_size)
        validate = None
        if held is not None:
            truth = sp.csr_matrix(self.train[:, held])

            def validate() -> float:
                from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking

                with torch.no_grad():
                    cols = module(x_all_t[held]).numpy()  # (n_held, n_fit)
                return evaluate_ranking(
                    lambda us: np.asarray(r[us] @ cols.T), truth, None, EvalConfig(ks=(10,))
                ).metrics["ndcg@10"]

        history = train_loop(job, cfg, validate, epochs=epochs, validate_first=True, desc=self.name)
        with torch.no_grad():
            content_cols = module(x_all_t).numpy().T  # (n_fit, n_items)
        cols = content_cols.copy()
        cols[:, items] = 0.5 * (cols[:, items] + b)  # warm items: blend EASE and content columns
        self._items_idx, self._columns, self.module = items, cols.astype(np.float32), module
        self._ease_b, self._content = b, content_cols  # for ``blend: valid``
        return history

    _content_scale = 1.0
    """The factor of a cold item's content column (``blend: valid``; 1: as the tower gives it)."""

    def score(self, users: np.ndarray) -> np.ndarray:
        x = self.train[self._check_users(users)][:, self._items_idx]
        return np.asarray(x @ self._columns, dtype=np.float32)

    @torch.no_grad()
    def score_content(self, users: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        self.module.eval()
        content = self.module(torch.from_numpy(np.asarray(vectors, np.float32))).numpy().T  # (n_fit, n_new)
        columns = self._content_scale * content
        x = self.train[self._check_users(users)][:, self._items_idx]
        return np.asarray(x @ columns, dtype=np.float32)

    def item_vectors(self) -> np.ndarray:
        """Each item's predicted column over the warm items (cold items from content alone)."""
        return np.ascontiguousarray(self._columns.T)

    def state(self) -> dict[str, np.ndarray]:
        module = {f"module.{k}": v.detach().numpy() for k, v in self.module.state_dict().items()}
        return {
            "items": self._items_idx,
            "columns": self._columns,
            "content_scale": np.asarray([self._content_scale]),
            **module,
            **csr_to_arrays("train", self.train),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._items_idx, self._columns = arrays["items"], arrays["columns"]
        # saved before ``blend: valid`` existed: the content columns as the tower gave them
        self._content_scale = float(arrays["content_scale"][0]) if "content_scale" in arrays else 1.0
        self.train = csr_from_arrays("train", arrays)
        weight = arrays["module.linear.weight"]  # (n_fit, d)
        module = ContentToColumn(np.zeros((weight.shape[1], weight.shape[0])), self.config.hidden, 0.0)
        module.load_state_dict(
            {k[7:]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("module.")}
        )
        self.module = module.eval()
