"""Where a run's stages find their inputs, opened one way by the driver and by remote
workers: the dataset and its split (:class:`RunSource`), the content vectors, and the
models a run folder saved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fusionrank.data.dataset import load_dataset
from fusionrank.data.splits import SplitConfig, prepare_split
from fusionrank.data.vectors import align
from fusionrank.registry import load_model, model_class

if TYPE_CHECKING:
    from fusionrank.data.dataset import Dataset
    from fusionrank.data.splits import Split
    from fusionrank.pipelines.config import DatasetSpec
    from fusionrank.recommender import Recommender


@dataclass(frozen=True)
class RunSource:
    """A run's dataset (a stored name under ``root``, or the user's files) and its split."""

    dataset: str | DatasetSpec
    root: str | None
    split: SplitConfig

    def open(self) -> tuple[Dataset, Split]:
        """The dataset and its (saved, reused) split."""
        data = load_dataset(self.dataset, self.root) if isinstance(self.dataset, str) else self.dataset.open()
        return data, prepare_split(data, self.split)


def content_arrays(folders: Mapping[str, str | Path], split: Split) -> dict[str, np.ndarray]:
    """Each modality's vectors, one row per split item in the split's order (zero rows for
    items without a vector)."""
    return {m: align(Path(folder), split.items)[0] for m, folder in folders.items()}


@dataclass(frozen=True)
class SavedModel:
    """A model a run folder saved: its class (registered name or dotted path) and folder."""

    cls: str
    folder: str

    def load(self) -> Recommender:
        return load_model(self.folder, model_class(self.cls))


def saved_models(models: Mapping[str, SavedModel]) -> dict[str, Recommender]:
    """Every saved model, loaded (scores identical to the fitted ones)."""
    return {name: saved.load() for name, saved in models.items()}
