"""One training loop for every neural model: minibatches, Adam, early stopping on the
validation metric (full ranking), restore of the best epoch, seeds, threads, progress."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from fusionrank.collab.negatives import NegativeKind
from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the shared training loop (each model gives its own defaults)."""

    epochs: int = 200
    """Maximum epochs."""
    batch_size: int = 2048
    """Training examples per step."""
    learning_rate: float = 1e-3
    """Adam step size."""
    weight_decay: float = 0.0
    """Adam weight decay (models add their own L2 terms to the loss)."""
    patience: int = 10
    """Stop after this many evaluations without improvement (0: never stop early)."""
    eval_every: int = 1
    """Evaluate on validation every this many epochs."""
    valid_metric: str = "ndcg@10"
    """Metric that picks the best epoch (full ranking, training items excluded)."""
    negatives: NegativeKind = "uniform"
    """Negative sampling distribution."""
    num_negatives: int = 1
    """Negatives per positive."""
    seed: int = 2020
    """Seeds torch, numpy and random."""
    threads: int | None = None
    """torch intra-op threads (None: torch's default)."""
    device: str = "cpu"
    """``cpu`` or ``cuda``."""
    progress: bool = True
    """Show a progress bar with the loss and the validation metric."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_every < 1 or self.patience < 0:
            raise ValueError("epochs, batch_size and eval_every must be >= 1 and patience >= 0")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be > 0")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device cuda was asked for but no CUDA device is available")


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


def copy_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of a module's weights (to restore the best epoch later)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainable:
    """What a model supplies to the loop: its module, an epoch of batches, a loss, scores."""

    module: torch.nn.Module

    def training_batches(self, rng: np.random.Generator, config: TrainConfig):  # pragma: no cover
        raise NotImplementedError

    def batch_loss(self, batch) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def score(self, users: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def on_epoch_end(self) -> None:
        """Hook: drop caches that depend on the weights."""


def train_loop(
    model: Trainable,
    config: TrainConfig,
    valid: sp.csr_matrix | None,
    exclude: sp.csr_matrix | None,
    desc: str = "train",
) -> TrainHistory:
    """Run the loop; with ``valid`` the best epoch by ``valid_metric`` is restored at the end."""
    if config.threads:
        torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    optimiser = torch.optim.Adam(
        model.module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    history = TrainHistory()
    best_state = None
    eval_config = EvalConfig(ks=(int(config.valid_metric.split("@")[1]),))
    since_best = 0
    t0 = time.perf_counter()
    bar = tqdm(range(1, config.epochs + 1), desc=desc, disable=not config.progress, dynamic_ncols=True)
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
        if valid is not None and epoch % config.eval_every == 0:
            model.module.eval()
            value = evaluate_ranking(model.score, valid, exclude, eval_config).metrics[config.valid_metric]
            history.valid.append((epoch, value))
            postfix[config.valid_metric] = f"{value:.4f}"
            if value > history.best_valid:
                history.best_valid, history.best_epoch = value, epoch
                history.time_to_best_s = time.perf_counter() - t0
                best_state = copy_state(model.module)
                since_best = 0
            else:
                since_best += 1
            if config.patience and since_best >= config.patience:
                bar.set_postfix(postfix)
                break
        bar.set_postfix(postfix)
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
