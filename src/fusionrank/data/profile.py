"""A dataset's profile: what its columns mean, shipped with the dataset (``dataset.json``).

Generic code never names a dataset's columns; it asks the profile which column holds the
item text, the title, the image path, the categories (genres), how items fall into
domains, and which user columns are side features. MovieLens-100K ships its profile
with the fetcher (:data:`fusionrank.data.fetch.ML100K_PROFILE`); an imported dataset gets
one from the options of ``fusionrank data import`` / :meth:`Dataset.from_files`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fusionrank.errors import InvalidArgumentError
from fusionrank.settings import build_settings

MODALITIES = ("text", "image", "clip", "kg")
"""Embedded content modalities: item text (transformers), images (ResNet), CLIP (images,
else text) and knowledge-graph entities (TransE, for datasets that ship ``.kg``/``.link``
files)."""
GENRES = "genres"
"""A content modality read straight from the catalogue, with nothing to embed: the item's
categories (the profile's ``genres`` column) as a 0/1 vector. A content model may read it
beside embedded ones (``modalities: [text, genres]``)."""


@dataclass(frozen=True)
class DatasetProfile:
    """What a dataset's columns mean. Every field is optional."""

    text: str | None = None
    """Template of an item's text over catalogue columns, e.g. ``"{title}. {description}"``."""
    title: str | None = None
    """Catalogue column shown as the item's title in recommendations."""
    image: str | None = None
    """Catalogue column with image paths, relative to ``image_root``."""
    image_root: str | None = None
    """Folder every image path must stay inside (absolute once the dataset is stored)."""
    genres: str | None = None
    """Catalogue column with the item's categories (a list, or space separated)."""
    domains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Domain rule over categories: an item goes to the first domain (in order) one of its
    categories matches; items matching none belong to no domain. Empty: domains come from
    the interactions' ``domain`` column, if any."""
    source_domain: str | None = None
    """Cross-domain protocol: the domain users are served from (default: the first domain)."""
    target_domain: str | None = None
    """Cross-domain protocol: the domain users are cold in (default: the second domain)."""
    user_features: tuple[str, ...] = ()
    """User-table columns that are side features (one-hot encoded) for cold-start users."""
    user_buckets: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """Numeric side features bucketed by these upper bounds, e.g. ``{"age": [18, 25, 35]}``."""
    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Encoder settings per modality (fields of :class:`~fusionrank.encoders.engine.EmbedConfig`,
    e.g. ``{"image": {"model": "resnet18", "weights": "/path/resnet18.safetensors"}}``)."""
    vectors: dict[str, str] = field(default_factory=dict)
    """Finished vectors folders (the vectors contract) to use for a modality instead of
    embedding, e.g. item embeddings made elsewhere: ``{"text": "/path/vectors/text"}``."""

    def __post_init__(self) -> None:
        for name, given in (("encoders", self.encoders), ("vectors", self.vectors)):
            unknown = set(given) - set(MODALITIES)
            if unknown:
                raise InvalidArgumentError(
                    f"{name}: unknown modality {sorted(unknown)}; expected some of {MODALITIES}"
                )
        object.__setattr__(self, "domains", {str(k): tuple(v) for k, v in self.domains.items()})
        object.__setattr__(
            self, "user_buckets", {str(k): tuple(float(b) for b in v) for k, v in self.user_buckets.items()}
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (for ``dataset.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None, owner: str = "dataset profile") -> DatasetProfile:
        """A profile from JSON values, validated (unknown keys are refused)."""
        return build_settings(cls, raw or {}, owner=owner)
