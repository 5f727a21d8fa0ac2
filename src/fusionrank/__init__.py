"""fusionrank: multimodal recommendation with honest evaluation.

The names a user types::

    import fusionrank as fr

    ds = fr.load_dataset("ml-100k")                  # or fr.Dataset.from_files(...) on own data
    split = fr.split(ds, "ratio", seed=2020)
    model = fr.build_model("lightgcn", dim=64)       # fr.list_models() lists every name
    model.fit(split)
    model.recommend(["1", "7"], k=10)
    fr.evaluate(model, split, ks=(10, 20))
    model.save("models/lgcn"); fr.load_model("models/lgcn")
    fr.embed(ds, encoder="text", out="vectors/text")    # a catalogue into a vectors folder
    fr.embed_content(ds, ["text"])                    # a dataset's content, for content models
    fr.ServeClient("http://127.0.0.1:8000").recommend("1")   # a running `fusionrank serve`

Every error fusionrank raises on purpose is a :class:`FusionRankError` (all of them are
exported here). Everything else stays in its module.

The names load on first use (``fr.ServeClient`` does not import torch or LightGBM; the
first model or embedding name does).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names, for type checkers and editors (loaded lazily below)
    from fusionrank.data.dataset import Dataset, load_dataset
    from fusionrank.data.errors import DataError
    from fusionrank.data.fetch import FetchError, UnsafeArchiveError
    from fusionrank.data.profile import DatasetProfile
    from fusionrank.data.splits import Split, SplitConfig, split
    from fusionrank.encoders.base import BaseEncoder, Encoder, EncoderContractError
    from fusionrank.encoders.engine import embed
    from fusionrank.encoders.job import EmbedSettingsError
    from fusionrank.encoders.registry import list_encoders, register_encoder
    from fusionrank.encoders.weights import ModelNotFoundError
    from fusionrank.engines.ray_engine import WorkerDiedError
    from fusionrank.errors import (
        FusionRankError,
        InconsistentInputError,
        InvalidArgumentError,
        MissingInputError,
        NotFittedError,
        UnknownKeyError,
    )
    from fusionrank.evaluation.evaluate import Evaluation, evaluate
    from fusionrank.io import IncompleteOutputError, StorageError
    from fusionrank.pipelines.config import ConfigError
    from fusionrank.pipelines.lock import RunLockedError
    from fusionrank.pipelines.stages.embed import embed_content
    from fusionrank.recommender import Recommender, UnknownUserError
    from fusionrank.registry import build_model, list_models, load_model, register
    from fusionrank.resources import InsufficientMemoryError
    from fusionrank.serving.client import ServeClient
    from fusionrank.serving.errors import BadRequestError, MissingExtraError
    from fusionrank.settings import SettingsError

__version__ = "0.2.0"

_EXPORTS: dict[str, str] = {
    "Dataset": "fusionrank.data.dataset",
    "load_dataset": "fusionrank.data.dataset",
    "DataError": "fusionrank.data.errors",
    "FetchError": "fusionrank.data.fetch",
    "UnsafeArchiveError": "fusionrank.data.fetch",
    "DatasetProfile": "fusionrank.data.profile",
    "Split": "fusionrank.data.splits",
    "SplitConfig": "fusionrank.data.splits",
    "split": "fusionrank.data.splits",
    "BaseEncoder": "fusionrank.encoders.base",
    "Encoder": "fusionrank.encoders.base",
    "EncoderContractError": "fusionrank.encoders.base",
    "embed": "fusionrank.encoders.engine",
    "EmbedSettingsError": "fusionrank.encoders.job",
    "list_encoders": "fusionrank.encoders.registry",
    "register_encoder": "fusionrank.encoders.registry",
    "ModelNotFoundError": "fusionrank.encoders.weights",
    "WorkerDiedError": "fusionrank.engines.ray_engine",
    "FusionRankError": "fusionrank.errors",
    "InconsistentInputError": "fusionrank.errors",
    "InvalidArgumentError": "fusionrank.errors",
    "MissingInputError": "fusionrank.errors",
    "NotFittedError": "fusionrank.errors",
    "UnknownKeyError": "fusionrank.errors",
    "Evaluation": "fusionrank.evaluation.evaluate",
    "evaluate": "fusionrank.evaluation.evaluate",
    "IncompleteOutputError": "fusionrank.io",
    "StorageError": "fusionrank.io",
    "ConfigError": "fusionrank.pipelines.config",
    "RunLockedError": "fusionrank.pipelines.lock",
    "embed_content": "fusionrank.pipelines.stages.embed",
    "Recommender": "fusionrank.recommender",
    "UnknownUserError": "fusionrank.recommender",
    "build_model": "fusionrank.registry",
    "list_models": "fusionrank.registry",
    "load_model": "fusionrank.registry",
    "register": "fusionrank.registry",
    "InsufficientMemoryError": "fusionrank.resources",
    "ServeClient": "fusionrank.serving.client",
    "BadRequestError": "fusionrank.serving.errors",
    "MissingExtraError": "fusionrank.serving.errors",
    "SettingsError": "fusionrank.settings",
}
"""Each public name and the module it is defined in."""


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fusionrank' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "BadRequestError",
    "BaseEncoder",
    "ConfigError",
    "DataError",
    "Dataset",
    "DatasetProfile",
    "EmbedSettingsError",
    "Encoder",
    "EncoderContractError",
    "Evaluation",
    "FetchError",
    "FusionRankError",
    "InconsistentInputError",
    "IncompleteOutputError",
    "InsufficientMemoryError",
    "InvalidArgumentError",
    "MissingInputError",
    "MissingExtraError",
    "ModelNotFoundError",
    "NotFittedError",
    "Recommender",
    "RunLockedError",
    "ServeClient",
    "SettingsError",
    "Split",
    "SplitConfig",
    "StorageError",
    "UnknownKeyError",
    "UnknownUserError",
    "UnsafeArchiveError",
    "WorkerDiedError",
    "__version__",
    "build_model",
    "embed",
    "embed_content",
    "evaluate",
    "list_encoders",
    "list_models",
    "load_dataset",
    "load_model",
    "register",
    "register_encoder",
    "split",
]
