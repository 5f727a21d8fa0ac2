"""The validated YAML config of ``fusionrank run``: one file drives every stage.

Unknown keys, unknown models and wrong types are refused with the file and the key path
(``configs/ml100k.yaml: ranker.learnig_rate: unknown key``) before anything runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fusionrank.data.splits import SplitConfig
from fusionrank.evaluation.ranking import EvalConfig
from fusionrank.features.table import FeatureConfig
from fusionrank.fusion.content import MODALITIES
from fusionrank.ranker.lgbm import RankerConfig
from fusionrank.retrieval.index import IndexConfig

RUN_MODELS = ("pop", "itemknn", "userknn", "rp3beta", "ease", "bpr", "neumf", "lightgcn", "sasrec", "hybrid")
"""Single models a run can fit (each is also a candidate source and a feature)."""


class ConfigError(ValueError):
    """A config problem, naming the file and the key path."""


@dataclass(frozen=True)
class ModelSpec:
    """One single model: its config overrides and (neural models) training overrides."""

    settings: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrievalConfig:
    n: int = 100
    """Candidates per source and user."""
    sources: tuple[str, ...] = ("ease", "lightgcn", "bpr", "itemknn")
    """Models whose top-n enter the union (each must be in ``models``)."""
    index: IndexConfig = field(default_factory=IndexConfig)
    """Search for embedding models (BPR, LightGCN): exact or a FAISS index."""


@dataclass(frozen=True)
class RunConfig:
    name: str
    """Run folder name under ``out``."""
    dataset: str = "ml-100k"
    root: str | None = None
    """Data directory (default: $FUSIONRANK_DATA or ./data)."""
    out: str = "runs"
    split: SplitConfig = field(default_factory=SplitConfig)
    modalities: tuple[str, ...] = ("text", "kg")
    """Content modalities for the hybrid model and the content features."""
    models: dict[str, ModelSpec] = field(default_factory=dict)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    ablation: bool = True
    """Refit the ranker without each feature group and without each source (report table)."""


def _build(cls: type, raw: Any, where: str, source: str) -> Any:
    """A (frozen) dataclass from a mapping, with nested dataclasses and tuples; clear errors."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where or 'top level'}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"{source}: {path}: unknown key; expected one of {sorted(fields)}")
        default = fields[key].default
        if default is dataclasses.MISSING and fields[key].default_factory is not dataclasses.MISSING:
            default = fields[key].default_factory()
        if dataclasses.is_dataclass(default):
            value = _build(type(default), value, path, source)
        elif isinstance(default, tuple):
            if not isinstance(value, list | tuple):
                raise ConfigError(f"{source}: {path}: expected a list, got {value!r}")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: {path}: expected true or false, got {value!r}")
        elif isinstance(default, int | float) and default is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{source}: {path}: expected a number, got {value!r}")
            value = type(default)(value) if isinstance(default, float) else value
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {where or 'top level'}: {exc}") from exc


def parse_run_config(raw: dict[str, Any], source: str = "<config>") -> RunConfig:
    """Validate a config mapping (as read from YAML)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    raw = dict(raw)
    if "name" not in raw:
        raise ConfigError(f"{source}: name: required (the run folder name)")
    models_raw = raw.pop("models", None) or {}
    if not isinstance(models_raw, dict):
        raise ConfigError(f"{source}: models: expected a mapping of model name to settings")
    models = {}
    for name, spec in models_raw.items():
        if name not in RUN_MODELS:
            raise ConfigError(f"{source}: models.{name}: unknown model; expected some of {list(RUN_MODELS)}")
        models[name] = _build(ModelSpec, spec, f"models.{name}", source)
    config = _build(RunConfig, raw, "", source)
    config = dataclasses.replace(config, models=models)
    if not models:
        raise ConfigError(f"{source}: models: at least one model is needed")
    for s in config.retrieval.sources:
        if s not in models:
            raise ConfigError(f"{source}: retrieval.sources: {s!r} is not among models {list(models)}")
    bad = set(config.modalities) - set(MODALITIES)
    if bad:
        raise ConfigError(f"{source}: modalities: unknown {sorted(bad)}; expected some of {list(MODALITIES)}")
    if config.split.kind in ("cold-items", "cold-users"):
        raise ConfigError(
            f"{source}: split.kind: the ranking pipeline needs a warm split, not {config.split.kind}"
        )
    return config


def load_run_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read and validate a YAML run config; ``overrides`` are dotted keys (``ranker.seed: 7``)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    raw = raw or {}
    for key, value in (overrides or {}).items():
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{path}: override {key}: {p} is not a mapping")
        node[leaf] = value
    return parse_run_config(raw, str(path))
