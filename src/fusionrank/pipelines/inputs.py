"""What every stage of a run reads, opened one way for the driver and for Ray actors:
the dataset, its split, the content vectors, and the models a run folder saved."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fusionrank.data.splits import prepare_split
from fusionrank.fusion.content import align, ensure_vectors
from fusionrank.pipelines.config import RunConfig
from fusionrank.registry import load_model

if TYPE_CHECKING:
    from fusionrank.data.dataset import Dataset
    from fusionrank.data.splits import Split
    from fusionrank.recommender import Recommender


@dataclass
class RunInputs:
    """A run's dataset and split, and its content vectors."""

    data: Dataset
    split: Split
    folders: dict[str, Path]
    """Vectors folder of every modality the run reads (its own and its models')."""
    content: dict[str, np.ndarray]
    """The run's content modalities (:meth:`RunConfig.content_modalities`), one row per
    split item, in the split's item order."""


def open_inputs(
    config: RunConfig, progress: bool = False, log: Callable[[str], None] | None = None
) -> RunInputs:
    """Open ``config``'s dataset and split and its content vectors (embedding any that are
    missing, as ``fusionrank embed`` would)."""
    data = config.open_dataset()
    split = prepare_split(data, config.split)
    modalities = config.content_modalities(data.profile)
    needed = set(modalities)
    for spec in config.models.values():
        needed |= set(spec.modalities())
    if log is not None:
        log(f"content: {', '.join(sorted(needed)) or 'none'}")
    folders = {m: ensure_vectors(data, m, progress) for m in sorted(needed)}
    content = {m: align(folders[m], split.items)[0] for m in modalities}
    return RunInputs(data, split, folders, content)


def saved_models(config: RunConfig, folder: Path) -> dict[str, Recommender]:
    """Every model of ``config`` as the run in ``folder`` saved it (``models/<name>/model``)."""
    return {
        name: load_model(folder / "models" / name / "model", spec.model_class())
        for name, spec in config.models.items()
    }
