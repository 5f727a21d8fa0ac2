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

Everything else stays in its module.
"""

from fusionrank.data.dataset import Dataset, load_dataset
from fusionrank.data.errors import DataError
from fusionrank.data.profile import DatasetProfile
from fusionrank.data.splits import Split, SplitConfig, split
from fusionrank.encoders.engine import embed
from fusionrank.errors import FusionRankError
from fusionrank.evaluation.evaluate import Evaluation, evaluate
from fusionrank.pipelines.stages.embed import embed_content
from fusionrank.recommender import Recommender, UnknownUserError
from fusionrank.registry import build_model, list_models, load_model, register
from fusionrank.settings import SettingsError

__version__ = "0.2.0"

__all__ = [
    "DataError",
    "Dataset",
    "DatasetProfile",
    "Evaluation",
    "FusionRankError",
    "Recommender",
    "SettingsError",
    "Split",
    "SplitConfig",
    "UnknownUserError",
    "__version__",
    "build_model",
    "embed",
    "embed_content",
    "evaluate",
    "list_models",
    "load_dataset",
    "load_model",
    "register",
    "split",
]
