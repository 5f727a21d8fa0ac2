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
"""

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
