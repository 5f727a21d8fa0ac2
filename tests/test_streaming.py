"""The run streams in chunks of users: the feature tables are written a row group per chunk,
no score function is asked for more users than a chunk, the ranker trains from a seeded
sample of label users, test scoring reads one row group at a time, and the chunk size
changes nothing in the results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from fusionrank.columns import ITEM_IDX, USER_IDX
from fusionrank.data.synth import synth_dataset
from fusionrank.features.shards import ShardedTable, ShardWriter
from fusionrank.features.table import SourceChunk, top_n_ranks
from fusionrank.io import read_json
from fusionrank.pipelines.config import load_run_config
from fusionrank.pipelines.run import run_pipeline
from fusionrank.pipelines.stages import features as candidates_stage
from fusionrank.pipelines.stages.ranker import ShardScores, candidate_scores, label_table, ranker_scores
from fusionrank.ranker.lgbm import LTRRanker, RankerConfig

USERS, ITEMS = 240, 150


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    synth_dataset("syn", root=root, users=USERS, items=ITEMS, interactions=6000, seed=5)
    return root


def _config(root, out, name, **extra):
    raw = {
        "name": name,
        "dataset": "syn",
        "root": str(root),
        "out": str(out),
        "modalities": [],
        "models": {"pop": {}, "itemknn": {"k": 20}, "ease": {"reg": 50.0}, "bpr": {"epochs": 3}},
        "retrieval": {"n": 20},
        "ranker": {"n_estimators": 30, "min_child_samples": 5, "early_stopping_rounds": 10},
        "evaluation": {"ks": [10]},
        "ablation": False,
        **extra,
    }
    path = out / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return load_run_config(path)


def test_chunk_size_changes_nothing_and_no_scorer_sees_more_than_a_chunk(synth_root, tmp_path, monkeypatch):
    whole = run_pipeline(_config(synth_root, tmp_path, "whole"), log=lambda _: None)
    asked: list[int] = []
    real = candidates_stage.chunk_scores

    def spy(fn, rows, exclude, mask):
        asked.append(len(rows))
        return real(fn, rows, exclude, mask)

    monkeypatch.setattr(candidates_stage, "chunk_scores", spy)
    chunked = run_pipeline(
        _config(synth_root, tmp_path, "chunked", features={"chunk_size": 16}), log=lambda _: None
    )
    assert max(asked) == 16 and len(asked) >= 2 * 4 * (USERS // 16)  # 2 stages x 4 models x chunks
    table = ShardedTable(chunked.folder / "features" / "features_valid.parquet")
    assert table.n_groups == -(-USERS // 16)  # one row group per chunk
    for stage in ("valid", "test"):
        a = pd.read_parquet(whole.folder / "features" / f"features_{stage}.parquet")
        b = pd.read_parquet(chunked.folder / "features" / f"features_{stage}.parquet")
        pd.testing.assert_frame_equal(a, b)
    assert whole.metrics["models"]["ltr"]["metrics"] == chunked.metrics["models"]["ltr"]["metrics"]
    assert whole.recall == chunked.recall


def test_an_approximate_index_reports_its_recall_against_exact_search(synth_root, tmp_path):
    config = _config(
        synth_root,
        tmp_path,
        "ann",
        retrieval={"n": 20, "index": {"kind": "auto", "hnsw_from": 100}, "ann_check_users": 50},
    )
    out = run_pipeline(config, log=lambda _: None)
    ann = read_json(out.folder / "metrics.json")["ann_recall"]
    assert set(ann) == {"bpr"}  # the only source with user and item vectors
    assert 0.8 <= ann["bpr"] <= 1.0
    assert "recall@20 against exact search" in (out.folder / "report.md").read_text()


def test_the_ranker_trains_on_a_seeded_sample_of_whole_users(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "valid.parquet"
    with ShardWriter(path) as w:
        for start in range(0, 60, 20):
            users = np.repeat(np.arange(start, start + 20), 5)
            w.write(
                pd.DataFrame(
                    {
                        USER_IDX: users,
                        ITEM_IDX: np.tile(np.arange(5), 20),
                        "x": rng.normal(size=len(users)).astype(np.float32),
                        "label": (np.tile(np.arange(5), 20) == 0).astype(np.int8) * (users % 3 != 0),
                    }
                )
            )
    sampled = label_table(path, RankerConfig(max_users=10, seed=1))
    assert sampled[USER_IDX].nunique() == 10
    assert (sampled.groupby(USER_IDX).size() == 5).all()  # whole query groups
    assert (sampled[USER_IDX] % 3 != 0).all()  # only users with a positive
    assert sampled.equals(label_table(path, RankerConfig(max_users=10, seed=1)))
    assert not sampled.equals(label_table(path, RankerConfig(max_users=10, seed=2)))
    every = label_table(path, RankerConfig(max_users=None))
    assert every[USER_IDX].nunique() == 40


def test_shard_scores_equal_scores_of_the_whole_table(tmp_path):
    rng = np.random.default_rng(1)
    n_items = 30
    frames = []
    for start in (0, 7, 19):  # uneven groups, with users missing in between
        users = np.repeat(np.arange(start, start + 5), 4)
        items = np.concatenate([rng.choice(n_items, 4, replace=False) for _ in range(5)])
        order = np.lexsort((items, users))
        frames.append(
            pd.DataFrame(
                {USER_IDX: users[order], ITEM_IDX: items[order], "x": rng.normal(size=20).astype(np.float32)}
            )
        )
    path = tmp_path / "test.parquet"
    with ShardWriter(path) as w:
        for f in frames:
            w.write(f.assign(label=(f["x"] > 0).astype(np.int8)))
    whole = pd.concat(frames, ignore_index=True).assign(label=lambda f: (f["x"] > 0).astype(np.int8))
    ranker = LTRRanker(RankerConfig(n_estimators=5, min_child_samples=1, early_stopping_rounds=2))
    ranker.fit(whole, ["x"])
    rows = np.arange(0, 26)
    expected = candidate_scores(whole, ranker.predict(whole), n_items)(rows)
    np.testing.assert_array_equal(
        ShardScores(path, ranker_scores(ranker, path), n_items, keep=1)(rows), expected
    )
    assert ShardedTable(path).groups_of(np.array([5, 6, 30])).tolist() == [1]


def test_a_table_with_groups_out_of_user_order_is_refused(tmp_path):
    path = tmp_path / "bad.parquet"
    with ShardWriter(path) as w:
        w.write(pd.DataFrame({USER_IDX: [5, 6], ITEM_IDX: [0, 1]}))
        w.write(pd.DataFrame({USER_IDX: [2], ITEM_IDX: [0]}))
    with pytest.raises(ValueError, match="not in user order"):
        ShardedTable(path)


def test_shards_keep_categorical_side_columns():
    frame = pd.DataFrame({USER_IDX: [0, 1], ITEM_IDX: [0, 0], "user_g": pd.Categorical(["F", "M"])})
    path = pytest.importorskip("pathlib").Path(__import__("tempfile").mkdtemp()) / "c.parquet"
    with ShardWriter(path) as w:
        w.write(frame.iloc[:1])
        w.write(frame.iloc[1:])
    back = pd.read_parquet(path)
    assert str(back["user_g"].dtype) == "category" and back["user_g"].tolist() == ["F", "M"]


def test_source_ranks_are_positions_in_its_top_n_and_n_plus_one_beyond():
    scores = torch.from_numpy(np.random.default_rng(3).normal(size=(8, 500)).astype(np.float32))
    scores[:, ::7] = -torch.inf  # known items
    view = SourceChunk.from_scores(scores.clone(), 40)
    full = torch.argsort(scores, dim=1, descending=True, stable=True)
    rows = np.repeat(np.arange(8), 500)
    items = np.tile(np.arange(500), 8)
    ranks = top_n_ranks(view.items, rows, items, 500).reshape(8, 500)
    for r in range(8):
        want = np.full(500, 41)
        want[full[r, :40].numpy()] = np.arange(1, 41)
        assert (ranks[r] == want).all()
    picked = view.pair_scores(rows, items).reshape(8, 500)
    assert np.array_equal(picked, scores.numpy())
