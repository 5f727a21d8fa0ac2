"""Item content for fusion: a dataset's content vectors per modality, aligned to a split's
item index, and fused across modalities.

The vectors are made by the embed stage (:mod:`fusionrank.pipelines.stages.embed`, once
per dataset and settings) and only read here, through
:meth:`fusionrank.Dataset.content_folder`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fusionrank.data.vectors import unit_rows
from fusionrank.errors import InvalidArgumentError

if TYPE_CHECKING:
    from fusionrank.data.splits import Split


@dataclass
class Content:
    """Content matrix ``(n_items, dim)`` in split item order, and which items have it."""

    vectors: np.ndarray
    present: np.ndarray  # (n_items,) bool: at least one modality
    modalities: tuple[str, ...]


def load_content(split: Split, modalities: tuple[str, ...] = ("text",)) -> Content:
    """The split's items' content: the L2-normalised modalities concatenated (each block
    weighs the same). Reads the vectors the embed stage made (a one-line error when they
    are missing: :func:`fusionrank.embed_content` makes them)."""
    if not modalities:
        raise InvalidArgumentError("a content model needs at least one modality (text, image, clip or kg)")
    blocks, present = [], np.zeros(split.n_items, dtype=bool)
    for m in modalities:
        vecs, has = split.content(m)
        blocks.append(vecs)
        present |= has
    return Content(fuse_modalities(blocks), present, tuple(modalities))


def fuse_modalities(blocks: list[np.ndarray]) -> np.ndarray:
    """Concatenate the blocks, each L2-normalised per row and scaled by 1/sqrt(#blocks) so
    that every modality weighs the same and a fully present row has unit norm."""
    fused = np.concatenate([unit_rows(np.asarray(b, np.float32)) for b in blocks], axis=1)
    return (fused / np.float32(np.sqrt(len(blocks)))).astype(np.float32)
