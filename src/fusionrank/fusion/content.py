"""Item content for fusion: a dataset's content vectors per modality, aligned to a split's
item index.

Vectors are computed once per dataset and settings (the resumable embedding engine for
text, images and CLIP; TransE for the knowledge graph) and kept under
``<dataset home>/vectors/<modality>-<key>/``, where the key hashes the settings. What to
embed comes from the dataset profile: the text template, the image column and root, and
the encoder settings per modality (``profile.encoders``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fusionrank.data.dataset import Dataset
from fusionrank.data.idmap import IdMap
from fusionrank.data.profile import MODALITIES
from fusionrank.encoders.vectors import read_vectors, unit_rows

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


@dataclass
class Content:
    """Content matrix ``(n_items, dim)`` in split item order, and which items have it."""

    vectors: np.ndarray
    present: np.ndarray  # (n_items,) bool: at least one modality
    modalities: tuple[str, ...]


def vectors_dir(dataset: Dataset, modality: str) -> Path:
    """Where the dataset's vectors for ``modality`` live (a key of the settings in the name)."""
    if dataset.home is None:
        raise ValueError(f"dataset {dataset.name!r} has no home folder to keep content vectors in")
    if modality == "kg":
        settings: dict[str, Any] = {"kg": "transe"}
    else:
        from fusionrank.encoders.engine import embed_config

        settings = embed_config(dataset, modality).decisive()  # type: ignore[arg-type]
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return dataset.home / "vectors" / f"{modality}-{key}"


def ensure_vectors(dataset: Dataset, modality: str, progress: bool = False) -> Path:
    """Compute the dataset's vectors for ``modality`` unless they are there; their folder."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    if modality in dataset.profile.vectors:  # made elsewhere
        given = Path(dataset.profile.vectors[modality])
        if not (given / "manifest.json").exists():
            raise FileNotFoundError(
                f"{dataset.name}: the {modality} vectors folder {given} has no manifest.json"
            )
        return given
    folder = vectors_dir(dataset, modality)
    if (folder / "manifest.json").exists():
        return folder
    if modality == "kg":
        from fusionrank.encoders.kg import TransEConfig, embed_kg

        if "kg" not in dataset.files or "link" not in dataset.files:
            raise FileNotFoundError(f"dataset {dataset.name!r} has no knowledge graph (.kg and .link files)")
        embed_kg(dataset.files["kg"], dataset.files["link"], folder, TransEConfig(progress=progress))
        return folder
    from fusionrank.encoders.engine import embed_catalogue, embed_config

    config = embed_config(dataset, modality, quiet=not progress)  # type: ignore[arg-type]
    embed_catalogue(dataset.catalogue_file(), folder, config, log=(lambda m: None) if not progress else None)
    return folder


def align(folder: Path, items: IdMap) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of ``folder`` in ``items`` order; rows without a vector are zero."""
    ids, vecs = read_vectors(folder)
    out = np.zeros((len(items), vecs.shape[1]), dtype=np.float32)
    idx = items.to_index(ids, missing=-1)
    keep = idx >= 0
    out[idx[keep]] = vecs[keep]
    present = np.zeros(len(items), dtype=bool)
    present[idx[keep]] = True
    return out, present


def content_blocks(
    split: Split, modalities: tuple[str, ...], progress: bool = False
) -> dict[str, np.ndarray]:
    """Each modality's vectors in the split's item order (zero rows where missing)."""
    data = split.require_dataset("content vectors")
    return {m: align(ensure_vectors(data, m, progress), split.items)[0] for m in modalities}


def load_content(split: Split, modalities: tuple[str, ...] = ("text",), progress: bool = False) -> Content:
    """The split's items' content: the L2-normalised modalities concatenated (each block
    weighs the same)."""
    if not modalities:
        raise ValueError("a content model needs at least one modality (text, image, clip or kg)")
    data = split.require_dataset("content vectors")
    blocks, present = [], np.zeros(split.n_items, dtype=bool)
    for m in modalities:
        vecs, has = align(ensure_vectors(data, m, progress), split.items)
        blocks.append(vecs)
        present |= has
    return Content(fuse_modalities(blocks), present, tuple(modalities))


def fuse_modalities(blocks: list[np.ndarray]) -> np.ndarray:
    """Concatenate the blocks, each L2-normalised per row and scaled by 1/sqrt(#blocks) so
    that every modality weighs the same and a fully present row has unit norm."""
    fused = np.concatenate([unit_rows(np.asarray(b, np.float32)) for b in blocks], axis=1)
    return (fused / np.float32(np.sqrt(len(blocks)))).astype(np.float32)
