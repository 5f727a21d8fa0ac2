"""The ``evaluate`` and ``train`` stages: fit models on a saved split, evaluate them by the
split's protocol (:func:`fusionrank.evaluate`), and — for ``train`` — save the model, its
vectors and its metrics. One fit -> evaluate -> metrics path for every model."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fusionrank.capabilities import HasItemVectors, HasUserVectors, ReadsContent
from fusionrank.columns import ITEM_ID, USER_ID
from fusionrank.data.dataset import Dataset, default_root, load_dataset
from fusionrank.data.splits import Split, SplitConfig, prepare_split
from fusionrank.data.vectors import write_vector_folder
from fusionrank.evaluation.evaluate import Evaluation, evaluate
from fusionrank.io import begin_stage, mark_done, write_json
from fusionrank.pipelines.lock import folder_lock
from fusionrank.pipelines.stages.embed import embed_content
from fusionrank.recommender import Recommender
from fusionrank.registry import build_model, model_class
from fusionrank.settings import SettingsError, aliases_of, config_fields

RUN_SOURCE = "source.json"
"""Where a ``train --out`` folder records its dataset and split, so ``recommend`` can reopen them."""


def settings_for(models: Sequence[str], overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each requested model's settings from ``--set`` overrides: ``MODEL.KEY=V`` for that
    model, ``KEY=V`` for every requested model that has the setting. A setting that no
    requested model has is refused (a typo would otherwise be ignored)."""
    keys = {
        m: {*config_fields(model_class(m).config_class), *aliases_of(model_class(m).config_class)}
        for m in models
    }
    out: dict[str, dict[str, Any]] = {m: {} for m in models}
    for key, value in overrides.items():
        prefix, dot, field = key.partition(".")
        if dot and prefix in keys:
            out[prefix][field] = value  # validated when the model is built
            continue
        if dot:
            raise SettingsError(f"setting {key!r} names model {prefix!r}, which is not requested")
        takers = [m for m in models if key in keys[m]]
        if not takers:
            raise SettingsError(f"no requested model has a setting {key!r}")
        for m in takers:
            out[m][key] = value
    return out


def build_for_split(
    name: str, settings: dict[str, Any], split: Split, defaults: dict[str, Any] | None = None
) -> Recommender:
    """A model by name; its seed defaults to the split's seed (``defaults``: more of them)."""
    return build_model(name, defaults={"seed": split.config.seed, **(defaults or {})}, **settings)


def evaluate_models(
    data: Dataset,
    models: Sequence[str],
    split: SplitConfig,
    overrides: dict[str, Any] | None = None,
    ks: tuple[int, ...] = (5, 10, 20, 50),
) -> dict[str, Evaluation]:
    """Fit each named model on the (saved) split and evaluate it; keyed by model name. The
    content vectors the models read are embedded first (the embed stage)."""
    per_model = settings_for(models, overrides or {})
    saved = prepare_split(data, split)
    built = {m: build_for_split(m, per_model[m], saved) for m in models}
    embed_content(data, content_needed(built.values()))
    return {m: evaluate(model.fit(saved), saved, ks) for m, model in built.items()}


def content_needed(models: Iterable[Recommender]) -> set[str]:
    """The content modalities some of ``models`` read (:class:`~fusionrank.capabilities.ReadsContent`)."""
    return {m for model in models if isinstance(model, ReadsContent) for m in model.content_modalities}


def run_evaluate(
    dataset: str,
    models: Sequence[str],
    split: SplitConfig,
    root: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    ks: tuple[int, ...] = (5, 10, 20, 50),
) -> dict[str, Evaluation]:
    """``fusionrank evaluate`` as a function: a stored dataset by name, then :func:`evaluate_models`."""
    return evaluate_models(load_dataset(dataset, root), models, split, overrides, ks)


def run_train(
    dataset: str,
    model: str,
    split: SplitConfig,
    out: str | Path | None = None,
    root: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    ks: tuple[int, ...] = (5, 10, 20, 50),
    defaults: dict[str, Any] | None = None,
) -> Evaluation:
    """``fusionrank train`` as a function: fit one model, evaluate it, and with ``out`` save
    the model, its vectors and ``metrics.json``; returns the evaluation. ``defaults`` apply
    where the model has the setting (``progress=False`` for a quiet command)."""
    root = Path(root) if root is not None else default_root()
    data = load_dataset(dataset, root)
    saved = prepare_split(data, split)
    built = build_for_split(model, dict(settings or {}), saved, defaults)
    embed_content(data, content_needed([built]))
    fitted = built.fit(saved)
    result = evaluate(fitted, saved, ks)
    if out is not None:
        save_run(fitted, saved, result, Path(out), root)
    return result


def save_run(model: Recommender, split: Split, result: Evaluation, out: Path, root: Path) -> None:
    """The model (safetensors + JSON), its item/user vectors in the vectors contract,
    ``metrics.json``, and ``source.json`` (dataset and split) for ``fusionrank recommend``.
    One writer at a time; the done-marker (with every file's checksum) is written last, so a
    killed save is never read as a finished model."""
    with folder_lock(out):
        begin_stage(out)
        _save_run(model, split, result, out, root)
        mark_done(out, "train", model=model.name)


def _save_run(model: Recommender, split: Split, result: Evaluation, out: Path, root: Path) -> None:
    model.save(out / "model")
    weights = {"source": "trained here", "path": str((out / "model").resolve())}
    items = model.item_vectors() if isinstance(model, HasItemVectors) else None
    users = model.user_vectors() if isinstance(model, HasUserVectors) else None
    exports = (
        ("item_vectors", split.items.ids, items, ITEM_ID),
        ("user_vectors", split.users.ids, users, USER_ID),
    )
    for folder, ids, vectors, id_column in exports:
        if vectors is not None:
            write_vector_folder(
                out / folder,
                ids,
                vectors,
                encoder=f"model:{model.name}",
                weights=weights,
                normalised=False,
                id_column=id_column,
            )
    result.to_json(out / "metrics.json")
    write_json(
        out / RUN_SOURCE,
        {"dataset": split.name, "root": str(root.resolve()), "split": dataclasses.asdict(split.config)},
    )
