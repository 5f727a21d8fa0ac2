"""The validated YAML config of ``fusionrank run``: one file drives every stage.

Only ``name``, ``dataset`` and ``models`` are required; every other section has defaults
(retrieval from every configured model, all feature groups, the LightGBM ranker, the
report). ``dataset`` is a stored dataset's name or a mapping with the fields of
:meth:`fusionrank.Dataset.from_files` (paths relative to the config file). ``models`` maps
a name to its settings; the name is a registered model, or ``class`` gives a dotted class
path. Unknown keys, models and wrong types are refused with the file and the key path
(``configs/ml100k.yaml: ranker.learnig_rate: unknown setting``) before anything runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fusionrank.capabilities import HasItemSimilarity, ReadsContent
from fusionrank.data.dataset import Dataset, load_dataset
from fusionrank.data.errors import DataError
from fusionrank.data.feedback import FeedbackConfig
from fusionrank.data.profile import MODALITIES, DatasetProfile
from fusionrank.data.splits import TEMPORAL_KINDS, SplitConfig
from fusionrank.data.vectors import check_vector_folder
from fusionrank.engines import ENGINES, engine_names
from fusionrank.engines.ray_engine import RayOptions
from fusionrank.errors import InvalidArgumentError
from fusionrank.evaluation.ranking import EvalConfig
from fusionrank.features.table import FeatureConfig
from fusionrank.ranker.lgbm import RankerConfig
from fusionrank.recommender import Recommender
from fusionrank.registry import build_model, model_class
from fusionrank.retrieval.index import IndexConfig
from fusionrank.settings import SettingsError, build_settings, config_fields


class ConfigError(SettingsError):
    """A config problem, naming the file and the key path."""


@dataclass(frozen=True)
class DatasetSpec:
    """The user's own files, as :meth:`fusionrank.Dataset.from_files` takes them."""

    interactions: str
    """Interaction file (CSV/TSV/Parquet/JSONL)."""
    items: str | None = None
    """Item catalogue file."""
    users: str | None = None
    """User table file."""
    name: str | None = None
    """Dataset name (default: the interaction file's stem)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Interaction columns: user, item, timestamp, rating, domain."""
    text: str | None = None
    """Item text template, e.g. ``"{title}. {description}"``."""
    image: str | None = None
    """Catalogue column with image paths."""
    image_root: str | None = None
    """Folder the image paths are relative to."""
    profile: dict[str, Any] = field(default_factory=dict)
    """Other profile fields (genres, title, domains, user_features, encoders ...)."""
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    """Rating threshold and k-core filter."""
    cache_dir: str | None = None
    """Folder for derived files (splits, vectors); default: a cache folder per dataset."""

    def open(self) -> Dataset:
        """Read and validate the files (:meth:`fusionrank.Dataset.from_files`)."""
        return Dataset.from_files(
            self.interactions,
            self.items,
            self.users,
            columns=self.columns or None,
            text=self.text,
            image=self.image,
            image_root=self.image_root,
            name=self.name,
            profile=self.profile or None,
            feedback=self.feedback,
            cache_dir=self.cache_dir,
        )

    def resolved(self, base: Path) -> DatasetSpec:
        """Paths made absolute against ``base`` (the config file's folder)."""

        def fix(value: str | None) -> str | None:
            return str((base / Path(value).expanduser()).resolve()) if value else value

        profile = dict(self.profile)
        encoders = {m: dict(s) for m, s in profile.get("encoders", {}).items()}
        for settings in encoders.values():
            for key in ("weights", "clip_pretrained", "model"):  # local files, not tags or hub ids
                value = settings.get(key)
                if isinstance(value, str) and (base / Path(value).expanduser()).exists():
                    settings[key] = fix(value)
        if encoders:
            profile["encoders"] = encoders
        if profile.get("vectors"):
            profile["vectors"] = {m: fix(folder) for m, folder in profile["vectors"].items()}
        return dataclasses.replace(
            self,
            interactions=fix(self.interactions) or self.interactions,
            items=fix(self.items),
            users=fix(self.users),
            image_root=fix(self.image_root),
            cache_dir=fix(self.cache_dir),
            profile=profile,
        )


@dataclass(frozen=True)
class ModelSpec:
    """One model of a run: its class (a registered name or a dotted path) and settings."""

    cls: str
    """Registered model name or dotted class path."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Keyword settings of the model's config (validated when the config is read)."""

    def model_class(self) -> type[Recommender]:
        return model_class(self.cls)

    def modalities(self) -> tuple[str, ...]:
        """The content modalities the model reads (:class:`~fusionrank.capabilities.ReadsContent`)."""
        model = build_model(self.cls, **self.settings)
        return model.content_modalities if isinstance(model, ReadsContent) else ()

    def build(
        self, name: str, seed: int, progress: bool, chosen: Mapping[str, Any] | None = None
    ) -> Recommender:
        """The unfitted model; its seed defaults to the split's and its progress bar to the run's.
        ``chosen``: what a fit on valid chose (``stages.models.refit_settings``), for a refit:
        ``epochs`` makes a model with a training loop train that many epochs without early
        stopping; any other key is a setting of the model's config, given as chosen."""
        settings = dict(self.settings)
        chosen = dict(chosen or {})
        fields = set(config_fields(self.model_class().config_class))
        epochs = chosen.pop("epochs", None)
        if epochs is not None and {"epochs", "validation"} <= fields:
            settings.update(epochs=epochs, validation=False)
        settings.update({k: v for k, v in chosen.items() if k in fields})
        model = build_model(
            self.cls, defaults={"seed": seed, "progress": progress}, owner=f"models.{name}", **settings
        )
        model.name = name
        return model


@dataclass(frozen=True)
class RetrievalConfig:
    """Candidate generation."""

    n: int = 100
    """Candidates per source and user."""
    sources: tuple[str, ...] | None = None
    """Models whose top-n enter the union (default: every model of the run)."""
    index: IndexConfig = field(default_factory=IndexConfig)
    """Search for models with user and item vectors (BPR, LightGCN): exact or a FAISS index
    (by default exact below ``index.hnsw_from`` items, HNSW above)."""
    ann_check_users: int = 1000
    """Users sampled (seeded) to measure an approximate index's recall@n against exact search."""


@dataclass(frozen=True)
class ProtocolConfig:
    """How the ranker learns and what test measures (every single model is measured under
    the same protocol as the ranker)."""

    labels: Literal["valid", "stacked"] = "valid"
    """``valid``: the sources are fitted on train and the ranker learns from the valid
    interactions. ``stacked``: out-of-fold stacking besides: each user's training
    interactions are cut into ``folds`` folds; for each fold the sources are fitted on the
    others (with the epochs found on valid) and the held-out fold labels their candidates;
    the ranker learns from every fold's query groups and the valid ones, and stops early on
    a held-out share of the valid users. On splits that follow time the folds do too (fit
    on the earlier parts, label the next)."""
    folds: int = 5
    """Folds of the stacked labels."""
    fold_fit: Literal["train", "train+valid"] = "train"
    """What each fold's sources are fitted on: the other folds of train (``train``), or
    those and valid (``train+valid``, splits that do not follow time): each fold's models
    then see as much data as the models of the valid table do, so every label table the
    ranker learns from is alike (``folds: 8`` of an 8:1:1 split gives folds of valid's
    size). Valid's interactions are then history in the fold tables (left out of their
    candidates), never a label there; test is in none."""
    fold_tables: int | None = None
    """How many folds give label tables (the first ones; None: all): each costs a fit of
    every model and a feature table, so a few folds of many keep the run short."""
    refit: bool = False
    """Refit every model on train + valid before test, with the settings and epochs found
    on valid, as a user deploys: the test features and every single model's test metrics
    come from the refits."""

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise InvalidArgumentError(f"protocol.folds must be >= 2, got {self.folds}")
        if self.fold_tables is not None and not 1 <= self.fold_tables <= self.folds:
            raise InvalidArgumentError(
                f"protocol.fold_tables must be between 1 and folds ({self.folds}), got {self.fold_tables}"
            )

    @property
    def name(self) -> str:
        """``valid`` or ``stacked-<folds>`` (``stacked-<tables>of<folds>`` when only some folds
        give tables, ``+valid`` when their models see valid), then ``+refit`` when refit
        (reports say it)."""
        labels = "valid"
        if self.labels == "stacked":
            used = "" if self.fold_tables in (None, self.folds) else f"{self.fold_tables}of"
            labels = f"stacked-{used}{self.folds}" + ("+valid" if self.fold_fit == "train+valid" else "")
        return labels + ("+refit" if self.refit else "")


@dataclass(frozen=True)
class RayConfig:
    """Where ``engine: ray`` runs."""

    address: str | None = None
    """Cluster to join (``host:port``); None: ``$RAY_ADDRESS``, else a local instance for the run."""
    actors: int | None = None
    """Actors (one CPU each), each holding the run's split and models; None: one per CPU."""

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise InvalidArgumentError(f"ray.actors must be >= 1, got {self.actors}")

    def options(self) -> RayOptions:
        """The Ray engine's options (the local engine does not read them)."""
        return RayOptions(address=self.address, actors=self.actors)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``fusionrank run`` does, in one validated object."""

    name: str
    """Run folder name under ``out``."""
    dataset: str | DatasetSpec
    """A stored dataset's name (``ml-100k``) or the user's own files."""
    models: dict[str, ModelSpec]
    """Single models: each is fitted, evaluated, and is a candidate source and a feature."""
    root: str | None = None
    """Data directory of named datasets (default: $FUSIONRANK_DATA or ./data)."""
    out: str = "runs"
    """Folder the run folder goes in."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """The protocol (a warm split: ratio, temporal-ratio, leave-last or global-temporal)."""
    modalities: tuple[str, ...] | None = None
    """Content modalities of the content features (default: text and/or image, as the
    dataset has them)."""
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    """Where the ranker's labels come from, and whether models are refit before test."""
    ablation: bool = False
    """Refit the ranker without each feature group and without each source (the report's
    ablation table; each refit's time is printed). Off by default: on a large run the refits
    cost more than the rest; the demo config turns it on."""
    engine: str = "local"
    """Where candidates, features and the ranker's test predictions are computed: ``local``
    (this process) or ``ray`` (chunks of users in Ray actors that read the run folder's
    stage outputs; the same tables and metrics). The ranker's own training engine is
    ``ranker.engine``."""
    ray: RayConfig = field(default_factory=RayConfig)
    """Ray cluster and actors for ``engine: ray`` (and ``ranker.engine: ray``)."""
    peers: str | None = None
    """Folder of committed peer results (``collab_vs_peers.json``...) shown beside the run
    (relative to the config file); none by default."""

    @property
    def dataset_name(self) -> str:
        if isinstance(self.dataset, str):
            return self.dataset
        return self.dataset.name or Path(self.dataset.interactions).stem

    def open_dataset(self) -> Dataset:
        """The run's dataset: loaded by name from ``root``, or read from the user's files."""
        if isinstance(self.dataset, str):
            return load_dataset(self.dataset, self.root)
        return self.dataset.open()

    @property
    def sources(self) -> tuple[str, ...]:
        """The models whose candidates enter the union."""
        return self.retrieval.sources if self.retrieval.sources is not None else tuple(self.models)

    def content_modalities(self, profile: Any) -> tuple[str, ...]:
        """The content features' modalities: as configured, else what the dataset has."""
        if self.modalities is not None:
            return self.modalities
        return tuple(m for m, has in (("text", profile.text), ("image", profile.image)) if has)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (``config.json`` of the run); :func:`parse_run_config` reads it back."""
        out = dataclasses.asdict(self)
        out["models"] = {n: {"class": m.cls, **m.settings} for n, m in self.models.items()}
        return out


def parse_run_config(raw: dict[str, Any], source: str = "<config>", base: Path | None = None) -> RunConfig:
    """Validate a config mapping (as read from YAML); ``base`` resolves relative paths."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    raw = dict(raw)
    for key in ("name", "dataset", "models"):
        if key not in raw:
            raise ConfigError(f"{source}: {key}: required (name, dataset and models are needed)")
    models = _models(raw.pop("models"), source)
    dataset_raw = raw.pop("dataset")
    if isinstance(dataset_raw, str):
        dataset: str | DatasetSpec = dataset_raw
    else:
        spec = _build(DatasetSpec, dataset_raw, "dataset", source)
        _build(DatasetProfile, spec.profile, "dataset.profile", source)  # its keys, before paths are resolved
        dataset = spec.resolved(base or Path.cwd())
    if isinstance(raw.get("peers"), str) and base is not None:  # like the dataset's files
        raw["peers"] = str((base / Path(raw["peers"]).expanduser()).resolve())
    config = _build(RunConfig, {**raw, "dataset": "-", "models": {}}, "", source)
    config = dataclasses.replace(config, dataset=dataset, models=models)
    for s in config.sources:
        if s not in models:
            raise ConfigError(f"{source}: retrieval.sources: {s!r} is not among models {list(models)}")
    item_item = config.features.item_item
    if item_item is not None:
        if item_item not in models:
            raise ConfigError(
                f"{source}: features.item_item: {item_item!r} is not among models {list(models)}"
            )
        if not issubclass(models[item_item].model_class(), HasItemSimilarity):
            raise ConfigError(f"{source}: features.item_item: model {item_item!r} has no item-item weights")
    bad = set(config.modalities or ()) - set(MODALITIES)
    if bad:
        raise ConfigError(f"{source}: modalities: unknown {sorted(bad)}; expected some of {list(MODALITIES)}")
    if 10 not in config.evaluation.ks:
        raise ConfigError(
            f"{source}: evaluation.ks: the report, the ablation and the ranker compare NDCG@10; "
            f"include 10 (got {list(config.evaluation.ks)})"
        )
    if config.engine not in ENGINES:
        raise ConfigError(f"{source}: engine: expected {engine_names()}, got {config.engine!r}")
    if config.protocol.fold_fit == "train+valid" and config.split.kind in TEMPORAL_KINDS:
        raise ConfigError(
            f"{source}: protocol.fold_fit: train+valid would fit each fold on valid, which follows it in"
            f" time on a {config.split.kind} split; use train"
        )
    if config.split.kind in ("cold-items", "cold-users", "cross-domain"):
        raise ConfigError(
            f"{source}: split.kind: the ranking pipeline needs a warm split, not {config.split.kind}"
        )
    return config


def _models(raw: Any, source: str) -> dict[str, ModelSpec]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source}: models: expected a mapping of model name to settings (at least one)")
    models = {}
    for name, settings in raw.items():
        settings = dict(settings or {})
        if not isinstance(settings, dict):
            raise ConfigError(f"{source}: models.{name}: expected a mapping of settings")
        cls_name = settings.pop("class", name)
        try:
            cls = model_class(cls_name)
            build_settings(cls.config_class, settings, owner=f"{source}: models.{name}")
        except SettingsError as exc:
            raise ConfigError(str(exc)) from exc
        except ValueError as exc:
            raise ConfigError(f"{source}: models.{name}: {exc}") from exc
        models[str(name)] = ModelSpec(cls_name, settings)
    return models


def _build(cls: type, raw: Any, where: str, source: str) -> Any:
    try:
        return build_settings(cls, raw, owner=source, where=where)
    except SettingsError as exc:
        raise ConfigError(str(exc)) from exc


def load_run_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read and validate a YAML run config; ``overrides`` are dotted keys (``ranker.seed: 7``)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.object[exc.start : exc.start + 1]!r})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: {where}not valid YAML: {' '.join(str(problem).split())}") from exc
    raw = raw or {}
    for key, value in (overrides or {}).items():
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{path}: override {key}: {p} is not a mapping")
        node[leaf] = value
    config = parse_run_config(raw, str(path), path.resolve().parent)
    _check_vectors(config, str(path))
    return config


def _check_vectors(config: RunConfig, source: str) -> None:
    """Vectors folders named by the config agree with their manifests (before anything runs)."""
    if not isinstance(config.dataset, DatasetSpec):
        return
    for modality, folder in config.dataset.profile.get("vectors", {}).items():
        try:
            check_vector_folder(folder)
        except (DataError, FileNotFoundError) as exc:
            raise ConfigError(f"{source}: dataset.profile.vectors.{modality}: {exc}") from exc
