"""One training loop for every neural model: minibatches, Adam, early stopping through a
validation callback, restore of the best epoch, seeds, threads, repeatable arithmetic, progress.

A model supplies its module, one epoch of batches and a loss (:class:`Trainable`); the
caller supplies ``validate`` (a function returning the metric to maximise, e.g. full-
ranking NDCG@10 on valid, or NDCG on pseudo-cold items). Every model's config inherits
:class:`TrainConfig`, so the loop's settings are written once.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from fusionrank.collab.negatives import NegativeKind
from fusionrank.determinism import repeatable
from fusionrank.errors import InvalidArgumentError


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the shared training loop (each model's config redeclares its defaults)."""

    epochs: int = 200
    """Maximum epochs."""
    batch_size: int = 2048
    """Training examples per step."""
    learning_rate: float = 1e-3
    """Adam step size."""
    weight_decay: float = 0.0
    """Adam weight decay (models add their own L2 terms to the loss)."""
    validation: bool = True
    """Evaluate every ``eval_every`` epochs and keep the best epoch (False: train exactly ``epochs``)."""
    patience: int = 10
    """Stop after this many evaluations without improvement (0: never stop early)."""
    eval_every: int = 1
    """Evaluate every this many epochs."""
    valid_metric: str = "ndcg@10"
    """Metric that picks the best epoch (full ranking, training items excluded)."""
    valid_users: int = 5000
    """Validate on at most this many users, a sample seeded by ``seed`` (0: every user)."""
    seed: int = 2020
    """Seeds torch, numpy and random."""
    threads: int | None = None
    """torch intra-op threads (None: torch's default)."""
    deterministic: bool = True
    """Bitwise-repeatable training: torch's deterministic algorithms (e.g. a sorted instead of
    a threaded scatter-add in embedding gradients). False trades repetition for speed."""
    device: str = "cpu"
    """``cpu`` or ``cuda``."""
    progress: bool = True
    """Show a progress bar with the loss and the validation metric."""

    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {}
    MIN_EPOCHS: ClassVar[int] = 1
    """The fewest ``epochs`` the config accepts: 1, or 0 for a model whose training starts
    from a fitted state that its validation may choose to keep (the hybrid's ridge map), so
    that a refit with the count found on valid keeps it too."""

    def __post_init__(self) -> None:
        if self.valid_users < 0:
            raise InvalidArgumentError(f"valid_users must be >= 0, got {self.valid_users}")
        if self.epochs < self.MIN_EPOCHS:
            raise InvalidArgumentError(f"epochs must be >= {self.MIN_EPOCHS}, got {self.epochs}")
        if self.batch_size < 1 or self.eval_every < 1 or self.patience < 0:
            raise InvalidArgumentError("batch_size and eval_every must be >= 1 and patience >= 0")
        if self.learning_rate <= 0:
            raise InvalidArgumentError("learning_rate must be > 0")
        if "@" not in self.valid_metric:
            raise InvalidArgumentError(f"valid_metric must look like ndcg@10, got {self.valid_metric!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise InvalidArgumentError("device cuda was asked for but no CUDA device is available")


@dataclass(frozen=True)
class SampledTrainConfig(TrainConfig):
    """The training loop with sampled negatives (collaborative models)."""

    negatives: NegativeKind = "uniform"
    """Negative sampling distribution."""
    num_negatives: int = 1
    """Negatives per positive."""


@dataclass
class TrainHistory:
    """What happened during training."""

    losses: list[float] = field(default_factory=list)
    valid: list[tuple[int, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: float = float("-inf")
    epochs: int = 0
    time_to_best_s: float = 0.0
    total_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON values (the model's ``history``)."""
        out = dataclasses.asdict(self)
        out["best_valid"] = None if not self.valid else self.best_valid
        return out


def copy_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of a module's weights (to restore the best epoch later)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainable:
    """What a model supplies to the loop: its module, an epoch of batches and a loss."""

    module: torch.nn.Module

    def training_batches(self, rng: np.random.Generator, config: Any) -> Iterable[Any]:  # pragma: no cover
        raise NotImplementedError

    def batch_loss(self, batch: Any) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def parameter_groups(self, config: TrainConfig) -> list[dict[str, Any]]:
        """Adam's parameter groups (default: every module parameter with the config's decay)."""
        return [{"params": list(self.module.parameters()), "weight_decay": config.weight_decay}]

    def on_epoch_end(self) -> None:
        """Hook: drop caches that depend on the weights."""


def train_loop(
    model: Trainable,
    config: TrainConfig,
    validate: Callable[[], float] | None = None,
    *,
    epochs: int | None = None,
    validate_first: bool = False,
    desc: str = "train",
) -> TrainHistory:
    """Train ``model.module``; with ``validate`` the best epoch by its value is restored at
    the end (``validate_first`` also scores the untrained start, which may win: epoch 0).
    ``epochs`` overrides the config's count (e.g. a refit with the chosen count)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    with repeatable(config.deterministic):
        return _train(model, config, validate, epochs, validate_first, desc)


def _train(
    model: Trainable,
    config: TrainConfig,
    validate: Callable[[], float] | None,
    epochs: int | None,
    validate_first: bool,
    desc: str,
) -> TrainHistory:
    n_epochs = config.epochs if epochs is None else epochs
    rng = np.random.default_rng(config.seed)
    optimiser = torch.optim.Adam(model.parameter_groups(config), lr=config.learning_rate)
    history = TrainHistory()
    best_state = None
    since_best = 0
    t0 = time.perf_counter()

    def check(epoch: int) -> bool:
        """Validate; returns True when patience has run out."""
        nonlocal best_state, since_best
        model.module.eval()
        value = float(validate())  # type: ignore[misc]
        history.valid.append((epoch, value))
        if value > history.best_valid:
            history.best_valid, history.best_epoch = value, epoch
            history.time_to_best_s = time.perf_counter() - t0
            best_state = copy_state(model.module)
            since_best = 0
        else:
            since_best += 1
        return bool(config.patience and since_best >= config.patience)

    if validate is not None and validate_first:
        check(0)
    bar = tqdm(range(1, n_epochs + 1), desc=desc, disable=not config.progress, dynamic_ncols=True)
    for epoch in bar:
        model.module.train()
        total, count = 0.0, 0
        for batch in model.training_batches(rng, config):
            optimiser.zero_grad(set_to_none=True)
            loss = model.batch_loss(batch)
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            count += 1
        model.on_epoch_end()
        history.losses.append(total / max(count, 1))
        history.epochs = epoch
        postfix = {"loss": f"{history.losses[-1]:.4f}"}
        stop = False
        if validate is not None and epoch % config.eval_every == 0:
            stop = check(epoch)
            postfix[config.valid_metric] = f"{history.valid[-1][1]:.4f}"
        bar.set_postfix(postfix)
        if stop:
            break
    bar.close()
    if best_state is not None:
        model.module.load_state_dict(best_state)
    else:
        history.best_epoch = history.epochs
        history.time_to_best_s = time.perf_counter() - t0
    model.on_epoch_end()
    model.module.eval()
    history.total_s = time.perf_counter() - t0
    return history
