"""The one model registry: short names -> model classes (and their config classes).

The CLI, the YAML run config, the pipeline and :func:`build_model` all read it. A model
may also be named by its dotted class path (``mypackage.models.MyRecommender``), so a
user's own :class:`~fusionrank.recommender.Recommender` plugs in everywhere a registered
name does.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusionrank.errors import InvalidArgumentError
from fusionrank.settings import build_settings, config_fields

if TYPE_CHECKING:  # the model classes load torch: imported where a class is needed, so that
    # the names (and the command line's help, which lists them) load none of it
    from fusionrank.recommender import Recommender

MODELS: dict[str, str] = {
    # collaborative filtering and neighbourhoods
    "pop": "fusionrank.collab.pop.Pop",
    "itemknn": "fusionrank.collab.itemknn.ItemKNN",
    "userknn": "fusionrank.collab.neighbours.UserKNN",
    "rp3beta": "fusionrank.collab.neighbours.RP3beta",
    "ease": "fusionrank.collab.ease.EASE",
    "ials": "fusionrank.collab.ials.IALS",
    "bpr": "fusionrank.collab.mf.BPR",
    "neumf": "fusionrank.collab.neumf.NeuMF",
    "lightgcn": "fusionrank.collab.lightgcn.LightGCN",
    "sasrec": "fusionrank.collab.sasrec.SASRec",
    # content and hybrids (cold items)
    "random": "fusionrank.fusion.content_models.RandomScores",
    "genre-pop": "fusionrank.fusion.content_models.GenrePop",
    "content-knn": "fusionrank.fusion.content_models.ContentKNN",
    "ease-content": "fusionrank.fusion.content_models.EASEContent",
    "kernel-content": "fusionrank.fusion.content_models.KernelContent",
    "marec-content": "fusionrank.fusion.cold_content.MARecContent",
    "aldi-content": "fusionrank.fusion.cold_content.ALDIContent",
    "hybrid": "fusionrank.fusion.hybrid.Hybrid",
    "two-tower": "fusionrank.fusion.two_tower.TwoTower",
    # profiles (cold users) and cross-domain
    "demographic-pop": "fusionrank.fusion.profiles.DemographicPop",
    "profile": "fusionrank.fusion.profiles.Profile",
    "cross-domain": "fusionrank.fusion.cross_domain.CrossDomain",
    "emcdr": "fusionrank.fusion.cross_domain.EMCDR",
}
"""Registered model names and the dotted paths of their classes."""

_EXTRA: dict[str, str] = {}

DEFAULT_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "new items": ("kernel-content", {"modalities": ("text", "genres"), "max_items": 5000}),
    "unknown users": ("profile", {}),
    "evaluate": ("ease", {}),
}
"""The model (and its settings) a path builds when nobody named one: ``fusionrank
recommend`` fits ``new items`` on a run's split to rank items from their text and genres
(:class:`~fusionrank.capabilities.ScoresNewItems`; the genres only where the dataset has
them; EASE columns over at most 5,000 popular warm items, so a large catalogue's fit stays
in memory) and ``unknown users`` for users
known only by side features (:class:`~fusionrank.capabilities.ServesUnknownUsers`);
``fusionrank evaluate`` evaluates ``evaluate`` when no ``--model`` is given."""


def register(name: str, cls: type[Recommender]) -> None:
    """Register a user's model class under a short name (the dotted path works without
    this); registered classes are also the ones ``fr.load_model`` imports by themselves.

    >>> import fusionrank as fr
    >>> from fusionrank.collab.pop import Pop
    >>> fr.register("popular", Pop)
    >>> fr.build_model("popular").name, "popular" in fr.list_models()
    ('popular', True)
    """
    from fusionrank.recommender import Recommender

    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise TypeError(f"{cls!r} is not a Recommender subclass")
    _EXTRA[name] = f"{cls.__module__}.{cls.__qualname__}"


def registered_classes() -> set[str]:
    """Dotted paths of every registered class (fusionrank's and the user's)."""
    return {*MODELS.values(), *_EXTRA.values()}


def import_dotted(path: str, what: str = "class") -> Any:
    """The object a dotted path names (``package.module.Name``), or a one-line error."""
    module, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidArgumentError(f"{what} {path!r} cannot be imported: {exc}") from exc


def _import_class(path: str) -> type[Recommender]:
    from fusionrank.recommender import Recommender

    cls = import_dotted(path, "model class")
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise InvalidArgumentError(f"{path!r} is not a fusionrank Recommender subclass")
    return cls


def model_class(name: str) -> type[Recommender]:
    """The class of a registered name or a dotted class path."""
    path = _EXTRA.get(name) or MODELS.get(name)
    if path is None:
        if "." not in name:
            raise InvalidArgumentError(
                f"unknown model {name!r}; registered: {sorted({*MODELS, *_EXTRA})}, or a dotted class path"
            )
        path = name
    return _import_class(path)


def list_models() -> dict[str, type]:
    """Every registered model name -> its config class.

    >>> import fusionrank as fr
    >>> models = fr.list_models()
    >>> "ease" in models and "cross-domain" in models, models["ease"].__name__
    (True, 'EASEConfig')
    """
    return {name: model_class(name).config_class for name in sorted({*MODELS, *_EXTRA})}


def build_model(
    name: str, *, defaults: Mapping[str, Any] | None = None, owner: str | None = None, **settings: Any
) -> Recommender:
    """A model by registered name or dotted class path, its settings by keyword.

    Settings are validated: an unknown key is an error that names the key and the model
    (or ``owner``); ``dim`` sets the embedding size of models that have one. ``defaults``
    (a run's or a command's, such as ``seed`` and ``progress``) apply where the model has
    the setting and it is not given: the one way every caller builds a model.

    >>> import fusionrank as fr
    >>> fr.build_model("lightgcn", dim=32).config.embedding_dim
    32
    >>> fr.build_model("ease", dim=32)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fusionrank.settings.SettingsError: ease: dim: unknown setting; expected one of ['max_items', ...]
    """
    cls = model_class(name)
    fields = config_fields(cls.config_class)
    given = {**{k: v for k, v in (defaults or {}).items() if k in fields}, **settings}
    model = cls(build_settings(cls.config_class, given, owner=owner or name))
    model.name = name
    return model


def saved_class(path: str) -> type[Recommender]:
    """The class of a saved model: fusionrank's own, or a class already registered. A
    saved folder never makes fusionrank import code the user did not name."""
    if path.startswith("fusionrank.") or path in registered_classes():
        return _import_class(path)
    raise InvalidArgumentError(
        f"refusing to import {path!r} named by a saved model: it is not fusionrank's; "
        "pass the class yourself: fr.load_model(folder, model_class=MyModel)"
    )


def load_model(folder: str | Path, model_class: type[Recommender] | None = None) -> Recommender:
    """Load a model saved with ``model.save(folder)``; scores are identical. Its class comes
    from the saved dotted path when it is fusionrank's own or registered; pass
    ``model_class`` for your own class.

    >>> import tempfile, pandas as pd, fusionrank as fr
    >>> events = pd.DataFrame({"user_id": list("aabbbcc"), "item_id": list("xyxyzyz")})
    >>> split = fr.split(fr.Dataset.from_files(events, cache_dir=tempfile.mkdtemp()), "leave-last")
    >>> folder = fr.build_model("ease", reg=1.0).fit(split).save(tempfile.mkdtemp())
    >>> fr.load_model(folder).name
    'ease'
    """
    from fusionrank.recommender import saved_config

    cls = model_class or saved_class(saved_config(Path(folder))["class"])
    return cls.load(folder, cls)
