"""The ``embed`` stage: a dataset's content vectors, made once per modality and settings.

Text, images and CLIP go through the resumable batch engine
(:func:`~fusionrank.encoders.engine.embed_catalogue`), the knowledge graph through TransE.
Each modality's vectors live in ``<dataset home>/vectors/<modality>-<key>/``, the key a
hash of the settings that decide them, and ``<dataset home>/content/<modality>.json``
records which folder is current and for which profile settings; models and features only
read them
(:meth:`fusionrank.Dataset.content_folder`, ``split.content``), never start an embedding
job themselves. A folder the profile names (``profile.vectors``) is used as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fusionrank.data.dataset import Dataset
from fusionrank.data.profile import GENRES
from fusionrank.errors import InvalidArgumentError
from fusionrank.io import write_json


def vectors_dir(dataset: Dataset, modality: str) -> Path:
    """Where the dataset's vectors for ``modality`` are made (a key of the settings in the
    name: the engine's ``decisive`` settings, or TransE's)."""
    if dataset.home is None:
        raise InvalidArgumentError(f"dataset {dataset.name!r} has no home folder to keep content vectors in")
    if modality == "kg":
        settings: dict[str, Any] = {"kg": "transe"}
    else:
        from fusionrank.encoders.engine import embed_config

        settings = embed_config(dataset, modality).decisive()
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return dataset.home / "vectors" / f"{modality}-{key}"


def embed_modality(dataset: Dataset, modality: str, progress: bool = False) -> Path:
    """The dataset's ``modality`` vectors, made unless they are there; their folder."""
    dataset.check_modality(modality)
    if modality in dataset.profile.vectors:  # made elsewhere
        return dataset.content_folder(modality)
    folder = vectors_dir(dataset, modality)
    if not (folder / "manifest.json").exists():
        if modality == "kg":
            from fusionrank.encoders.kg import TransEConfig, embed_kg

            embed_kg(dataset.files["kg"], dataset.files["link"], folder, TransEConfig(progress=progress))
        else:
            from fusionrank.encoders.engine import embed_catalogue, embed_config

            config = embed_config(dataset, modality, quiet=not progress)
            log = None if progress else (lambda m: None)
            embed_catalogue(dataset.catalogue_file(), folder, config, log=log)
    write_json(
        dataset.current_content(modality),
        {"folder": folder.name, "inputs": dataset.content_inputs(modality)},
    )
    return folder


def embed_content(
    dataset: Dataset,
    modalities: Iterable[str] = ("text",),
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """The embed stage: each modality's vectors folder, made where missing (``fusionrank
    run`` calls it before any model is fitted; in a notebook, call it before fitting a
    model that reads content).

    >>> import tempfile, pandas as pd, fusionrank as fr
    >>> events = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]})
    >>> items = pd.DataFrame({"item_id": ["x", "y"], "title": ["Heat", "Up"]})
    >>> ds = fr.Dataset.from_files(events, items, text="{title}", cache_dir=tempfile.mkdtemp())
    >>> sorted(fr.embed_content(ds, ["text"]))
    ['text']
    """
    wanted = sorted(set(modalities) - {GENRES})  # read from the catalogue: nothing to embed
    if log is not None:
        log(f"content: {', '.join(wanted) or 'none'}")
    return {m: embed_modality(dataset, m, progress) for m in wanted}
