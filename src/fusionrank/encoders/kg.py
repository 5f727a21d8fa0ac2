"""Knowledge-graph item vectors: TransE (Bordes et al., 2013) on (head, relation, tail)
triples, with a link file mapping items to entities. A content modality like text."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from fusionrank.columns import ITEM_ID
from fusionrank.data.vectors import write_vector_folder
from fusionrank.determinism import repeatable
from fusionrank.io import sha256_file


@dataclass(frozen=True)
class TransEConfig:
    """TransE: h + r ≈ t for true triples, margin ranking against corrupted ones."""

    dim: int = 64
    """Entity and relation vector size."""
    margin: float = 1.0
    """Margin between true and corrupted triple distances."""
    epochs: int = 30
    """Passes over the triples."""
    batch_size: int = 4096
    """Triples per step."""
    learning_rate: float = 5e-3
    """Adam step size."""
    seed: int = 2020
    """Seed of initialisation and corruption."""
    progress: bool = True
    """Show a progress bar."""


class TransE(nn.Module):
    def __init__(self, n_entities: int, n_relations: int, dim: int) -> None:
        super().__init__()
        self.entities = nn.Embedding(n_entities, dim)
        self.relations = nn.Embedding(n_relations, dim)
        bound = 6 / dim**0.5
        nn.init.uniform_(self.entities.weight, -bound, bound)
        nn.init.uniform_(self.relations.weight, -bound, bound)
        with torch.no_grad():
            self.relations.weight.div_(self.relations.weight.norm(dim=1, keepdim=True))

    def distance(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        e = nn.functional.normalize(self.entities.weight, dim=1)
        return (e[h] + self.relations(r) - e[t]).norm(p=2, dim=-1)


def train_transe(triples: pd.DataFrame, config: TransEConfig) -> tuple[dict[str, int], np.ndarray]:
    """Train on (head_id, relation_id, tail_id) rows; returns the entity index and vectors."""
    entities = pd.Index(
        pd.unique(np.concatenate([triples["head_id"].to_numpy(), triples["tail_id"].to_numpy()]))
    )
    relations = pd.Index(pd.unique(triples["relation_id"]))
    h = torch.from_numpy(entities.get_indexer(triples["head_id"]).astype(np.int64))
    r = torch.from_numpy(relations.get_indexer(pd.Index(triples["relation_id"])).astype(np.int64))
    t = torch.from_numpy(entities.get_indexer(triples["tail_id"]).astype(np.int64))
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = TransE(len(entities), len(relations), config.dim)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    with repeatable():  # the embedding gradients summed in a fixed order: the same vectors each run
        _fit_transe(model, opt, (h, r, t), len(entities), gen, config)
    with torch.no_grad():
        vectors = nn.functional.normalize(model.entities.weight, dim=1).numpy()
    return {e: i for i, e in enumerate(entities)}, vectors


def _fit_transe(
    model: TransE,
    opt: torch.optim.Optimizer,
    triples: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    n_entities: int,
    gen: torch.Generator,
    config: TransEConfig,
) -> None:
    """TransE's epochs: margin loss against head- or tail-corrupted triples."""
    h, r, t = triples
    bar = tqdm(range(config.epochs), desc="TransE", disable=not config.progress)
    for _ in bar:
        order = torch.randperm(len(h), generator=gen)
        total = 0.0
        for s in range(0, len(order), config.batch_size):
            idx = order[s : s + config.batch_size]
            hh, rr, tt = h[idx], r[idx], t[idx]
            corrupt = torch.randint(0, n_entities, (len(idx),), generator=gen)
            head_side = torch.rand(len(idx), generator=gen) < 0.5
            ch = torch.where(head_side, corrupt, hh)
            ct = torch.where(head_side, tt, corrupt)
            loss = torch.relu(config.margin + model.distance(hh, rr, tt) - model.distance(ch, rr, ct)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        bar.set_postfix(loss=f"{total / len(order):.4f}")


def embed_kg(
    kg: str | Path,
    link: str | Path,
    out: str | Path,
    config: TransEConfig | None = None,
    items: list[str] | None = None,
) -> dict:
    """Train TransE on ``kg`` and write item vectors (the vectors contract) to ``out``.

    Items of ``link`` (or ``items``, if given) without an entity go to ``errors.parquet``.
    A finished folder (``manifest.json`` with the same inputs and settings) is reused.
    """
    from fusionrank.data.atomic import read_atomic
    from fusionrank.io import read_json

    config = config or TransEConfig()
    kg, link, out = Path(kg), Path(link), Path(out)
    inputs = {"kg": sha256_file(kg), "link": sha256_file(link)}
    settings = {k: v for k, v in asdict(config).items() if k != "progress"}
    if (out / "manifest.json").exists():
        old = read_json(out / "manifest.json")
        if old.get("inputs") == inputs and old.get("settings") == settings:
            return old
    t0 = time.perf_counter()
    triples = read_atomic(kg)
    links = read_atomic(link)
    index, vectors = train_transe(triples, config)
    entity_of = dict(zip(links[ITEM_ID].astype(str), links["entity_id"].astype(str)))
    wanted = items if items is not None else list(entity_of)
    ids, rows, missing = [], [], []
    for item in wanted:
        e = entity_of.get(str(item))
        if e is not None and e in index:
            ids.append(str(item))
            rows.append(index[e])
        else:
            missing.append(str(item))
    return write_vector_folder(
        out,
        ids,
        vectors[rows] if rows else np.empty((0, config.dim), np.float32),
        encoder="kg-transe",
        weights={"source": "trained here", **inputs},
        normalised=True,
        errors=[(item, "no knowledge-graph entity") for item in missing],
        inputs=inputs,
        settings=settings,
        triples=len(triples),
        seconds=time.perf_counter() - t0,
    )
