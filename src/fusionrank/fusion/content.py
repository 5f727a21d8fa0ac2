"""Item content for fusion: the dataset's text and knowledge-graph vectors, aligned to a
split's item index. Vectors are computed once per dataset (resumable engine / TransE) and
cached under ``<root>/<dataset>/vectors/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionrank.data.idmap import IdMap
from fusionrank.encoders.vectors import read_vectors, unit_rows

MODALITIES = ("text", "kg")
TEXT_FIELDS = ("movie_title", "release_year", "class")


@dataclass
class Content:
    """Content matrix ``(n_items, dim)`` in split item order, and which items have it."""

    vectors: np.ndarray
    present: np.ndarray  # (n_items,) bool: at least one modality
    modalities: tuple[str, ...]


def vectors_dir(root: str | Path, dataset: str, modality: str) -> Path:
    return Path(root) / dataset / "vectors" / {"text": "text-minilm", "kg": "kg-transe"}[modality]


def ensure_vectors(root: str | Path, dataset: str, modality: str, quiet: bool = True) -> Path:
    """Compute the dataset's vectors for a modality if they are not there yet."""
    folder = vectors_dir(root, dataset, modality)
    if (folder / "manifest.json").exists():
        return folder
    data = Path(root) / dataset
    if modality == "text":
        from fusionrank.encoders.engine import EmbedConfig, embed_catalogue

        embed_catalogue(
            data / f"{dataset}.item",
            folder,
            EmbedConfig(fields=TEXT_FIELDS, quiet=quiet),
            log=(lambda m: None) if quiet else None,
        )
    elif modality == "kg":
        from fusionrank.encoders.kg import TransEConfig, embed_kg

        if not (data / f"{dataset}.kg").exists():
            raise FileNotFoundError(f"{dataset} has no knowledge graph ({data / f'{dataset}.kg'})")
        embed_kg(data / f"{dataset}.kg", data / f"{dataset}.link", folder, TransEConfig(progress=not quiet))
    else:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
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


def load_content(
    root: str | Path, dataset: str, items: IdMap, modalities: tuple[str, ...] = ("text",)
) -> Content:
    """Concatenate the L2-normalised modalities (each block weighs the same)."""
    blocks, present = [], np.zeros(len(items), dtype=bool)
    for m in modalities:
        vecs, has = align(ensure_vectors(root, dataset, m), items)
        blocks.append(vecs)
        present |= has
    return Content(fuse_modalities(blocks), present, tuple(modalities))


def fuse_modalities(blocks: list[np.ndarray]) -> np.ndarray:
    """Concatenate the blocks, each L2-normalised per row and scaled by 1/sqrt(#blocks) so
    that every modality weighs the same and a fully present row has unit norm."""
    return np.concatenate([unit_rows(b) for b in blocks], axis=1) / np.sqrt(len(blocks))
