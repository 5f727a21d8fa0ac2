"""The embedding job's chunk work for a worker process: :class:`ShardEmbedder` loads the
encoder and opens the catalogue once, then embeds the shards it is given with the local
engine's own feeding code (:func:`~fusionrank.encoders.batches.embed_shards`: same
preprocessing, same bad-row rules). An engine that runs work elsewhere than the driver
(:class:`~fusionrank.engines.ray_engine.RayEngine`) builds it in each worker; the local
engine uses the driver's own encoder instead."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fusionrank.encoders.base import Encoder
from fusionrank.encoders.batches import embed_shards
from fusionrank.encoders.embed_config import EmbedConfig
from fusionrank.encoders.job import Shard
from fusionrank.errors import InconsistentInputError

PATH_SETTINGS = ("model", "weights", "pretrained")
"""Encoder settings that may name a local file or folder (made absolute for the workers)."""


def absolute(config: EmbedConfig) -> EmbedConfig:
    """The config as a worker elsewhere reads it: local paths made absolute (workers may run
    in another folder), and the encoder named by what the worker can import (a name
    registered in this process is unknown there: its class's dotted path)."""
    changes: dict[str, Any] = {}
    for name in PATH_SETTINGS:
        value = getattr(config.encoder_config, name, None)
        if isinstance(value, str) and value and Path(value).expanduser().exists():
            changes[name] = str(Path(value).expanduser().resolve())
    encoder_config = (
        dataclasses.replace(config.encoder_config, **changes) if changes else config.encoder_config
    )
    root = str(Path(config.image_root).expanduser().resolve()) if config.image_root else None
    return dataclasses.replace(
        config, encoder=config.encoder_ref, image_root=root, encoder_config=encoder_config
    )


def _same_weights(a: dict, b: dict) -> bool:
    """Identities agree but for where the files lie (caches differ between nodes)."""
    return {k: v for k, v in a.items() if k != "path"} == {k: v for k, v in b.items() if k != "path"}


class ShardEmbedder:
    """Built once per worker: loads the encoder the driver recorded and opens the
    catalogue; then each call embeds a stream of shards (their vectors and errors filled in)."""

    def __init__(
        self,
        catalogue: str,
        config: EmbedConfig,
        n_rows: int,
        identity: dict,
        dim: int,
        id_errors: dict[int, str],
    ) -> None:
        from fusionrank.encoders.catalogue import open_catalogue
        from fusionrank.encoders.embed_config import build_encoder

        if config.device.startswith("cuda"):  # a worker's GPU(s) are cuda:0...
            config = dataclasses.replace(config, device="cuda")
        self.config, self.id_errors = config, id_errors
        self.encoder: Encoder = build_encoder(config)
        mine = json.loads(json.dumps(self.encoder.identity))
        if not _same_weights(mine, identity) or self.encoder.dim != dim:
            raise InconsistentInputError(
                f"a worker loaded other weights than the driver ({mine} vs {identity}); "
                "the model must be the same file on every node"
            )
        self.table = open_catalogue(Path(catalogue))  # memory-mapped; once per worker
        if len(self.table) != n_rows:
            raise InconsistentInputError(
                f"a worker reads {len(self.table)} rows in {catalogue}, the driver {n_rows}; "
                "the catalogue must be the same file on every node"
            )

    def __call__(self, shards: Iterable[Shard]) -> Iterator[Shard]:
        return embed_shards(self.table, self.encoder, self.config, self.id_errors, shards)
