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
from fusionrank.errors import InvalidArgumentError
from fusionrank.fusion.content_models import ContentRecommender
from fusionrank.fusion.validation import pseudo_cold_items
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
    blend: Literal["fixed", "valid"] = "fixed"
    """How warm and cold columns are put together. ``fixed``: a warm item's column is the mean
    of its EASE column and its content column, a cold item's its content column, as the tower
    leaves them (a fine-tuned tower's content columns can be several times EASE's scale and
    swamp the warm ranking). ``valid``: the content columns are scaled to the EASE columns'
    norm, a warm item's column is its EASE column plus ``warm_blend`` times its content
    column, a cold item's ``cold_scales`` times its content column, both chosen on the
    split's valid interactions (a ranking of the warm items; a cold-start deployment would
    choose the cold factor on cold items instead)."""
    warm_blend: tuple[float, ...] = (0.0, 0.125, 0.25, 0.5, 1.0)
    """``blend: valid``: weights tried for a warm item's content column (0: EASE's column)."""
    cold_scales: tuple[float, ...] = (0.0, 0.03, 0.1, 0.3, 1.0)
    """``blend: valid``: factors tried for a cold item's content column. With one value each,
    or without valid rows, the first values are used (a refit is given the chosen ones)."""

    MIN_EPOCHS: ClassVar[int] = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("warm_blend", "cold_scales"):
            values = getattr(self, name)
            if not values or min(values) < 0:
                raise InvalidArgumentError(f"{name} must be weights >= 0, got {list(values)}")


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

    def _fit_content(self, split: Split) -> None:
        cfg = self.config
        warm = np.flatnonzero(self.warm)
        epochs = cfg.epochs
        if cfg.validation:
            held = pseudo_cold_items(warm, cfg.valid_share, cfg.seed)
            history = self._train(np.setdiff1d(warm, held), held, epochs)
            epochs = history.best_epoch
            self.history = history.as_dict()
        self._train(warm, None, epochs)
        if cfg.blend == "valid":
            self._columns = self._valid_blend(split)
        del self._ease_b, self._content  # the columns hold what scoring needs

    def _valid_blend(self, split: Split) -> np.ndarray:
        """``blend: valid``: every item's column, the content columns scaled to EASE's norm,
        warm ones plus their EASE column; the weights chosen on valid (each pair's figure in
        ``history["blend"]``)."""
        cfg = self.config
        items, b = self._items_idx, self._ease_b
        cold = np.setdiff1d(np.arange(self.n_items), items)
        scale = float(np.linalg.norm(b) / max(float(np.linalg.norm(self._content[:, items])), 1e-12))
        content = scale * self._content

        def columns(warm_weight: float, cold_factor: float) -> np.ndarray:
            cols = np.empty_like(content, dtype=np.float32)
            cols[:, items] = b + warm_weight * content[:, items]
            cols[:, cold] = cold_factor * content[:, cold]
            return cols

        chosen = (cfg.warm_blend[0], cfg.cold_scales[0])
        grid = [(w, f) for w in cfg.warm_blend for f in cfg.cold_scales]
        validate = None
        if cfg.validation and len(grid) > 1:
            validate = ranking_validator(self, split, cfg.valid_metric, cfg.valid_users, cfg.seed)
        if validate is not None:
            tried = []
            for w, f in grid:
                self._columns = columns(w, f)  # what ``score`` reads
                tried.append((w, f, validate()))
            best = max(tried, key=lambda t: t[2])  # the first best on ties
            chosen = (best[0], best[1])
            self.history = {**(self.history or {}), "blend": tried}
        self.history = {
            **(self.history or {}),
            "chosen": {"warm_blend": [chosen[0]], "cold_scales": [chosen[1]]},
        }
        self._content_scale = scale * chosen[1]
        return columns(*chosen)

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
