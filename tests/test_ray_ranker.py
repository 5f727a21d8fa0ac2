"""The ranker on Ray Train (``ranker.engine: ray``): the table cut by whole users, two
data-parallel LightGBM workers reaching the local ranker's quality, and a booster saved
in the local ranker's format. The ml-100k comparison is in ``test_ray_slow.py``."""

import numpy as np
import pandas as pd
import pytest

from fusionrank.columns import USER_IDX
from fusionrank.engines.ray_train import user_blocks
from fusionrank.ranker.lgbm import LTRRanker, RankerConfig

FEATURES = ["f0", "f1", "f2", "f3"]
PER_USER = 30


def _table(n_users: int, seed: int) -> pd.DataFrame:
    """30 candidates per user; the 3 with the best noisy f0 + f1/2 are the positives."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_users * PER_USER, 4)).astype(np.float32)
    signal = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.7, size=len(x))).reshape(n_users, PER_USER)
    best = np.argsort(-signal, axis=1)[:, :3] + np.arange(n_users)[:, None] * PER_USER
    table = pd.DataFrame(x, columns=FEATURES)
    table[USER_IDX] = np.repeat(np.arange(n_users), PER_USER)
    table["label"] = 0
    table.loc[best.ravel(), "label"] = 1
    return table


def _ndcg10(ranker: LTRRanker, table: pd.DataFrame) -> float:
    n = len(table) // PER_USER
    scores = ranker.predict(table).reshape(n, PER_USER)
    labels = table["label"].to_numpy().reshape(n, PER_USER)
    top = np.argsort(-scores, axis=1)[:, :10]
    discount = 1 / np.log2(np.arange(2, 12))
    return float(((np.take_along_axis(labels, top, 1) * discount).sum(1) / discount[:3].sum()).mean())


def test_user_blocks_cut_whole_users_into_balanced_parts():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(50), rng.integers(1, 40, size=50))
    blocks = user_blocks(users, 3)
    assert [b.start for b in blocks][0] == 0 and blocks[-1].stop == len(users)
    assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))
    parts = [set(users[b]) for b in blocks]
    assert all(not (p & q) for k, p in enumerate(parts) for q in parts[k + 1 :])  # no user in two parts
    sizes = [b.stop - b.start for b in blocks]
    assert max(sizes) - min(sizes) <= 2 * 40  # cut at the first user boundary after each equal share
    assert user_blocks(np.array([0, 0, 0, 0, 0, 0, 1, 2]), 3) == [slice(0, 6), slice(6, 7), slice(7, 8)]
    with pytest.raises(ValueError, match="workers is 3 but only 2 users"):
        user_blocks(np.array([0, 0, 1]), 3)
    with pytest.raises(ValueError, match="sorted by user"):
        user_blocks(np.array([1, 0]), 2)


def test_ranker_engine_setting_is_checked():
    with pytest.raises(ValueError, match="ranker.engine must be 'local' or 'ray'"):
        RankerConfig(engine="spark")
    with pytest.raises(ValueError, match="ranker.workers must be >= 1"):
        RankerConfig(engine="ray", workers=0)


def test_ray_ranker_reaches_the_local_ranker_and_saves_the_same_format(ray_instance, tmp_path):
    train, test = _table(300, seed=0), _table(200, seed=1)
    base = {"n_estimators": 120, "min_child_samples": 20, "early_stopping_rounds": 15, "max_users": None}
    local = LTRRanker(RankerConfig(**base)).fit(train, FEATURES)
    on_ray = LTRRanker(RankerConfig(**base, engine="ray", workers=2)).fit(train, FEATURES)
    assert 1 <= on_ray.best_iteration <= 120 and 0.5 < on_ray.stop_score <= 1
    ndcg_local, ndcg_ray = _ndcg10(local, test), _ndcg10(on_ray, test)
    assert ndcg_ray > 0.7, ndcg_ray  # random order gives about 0.3
    assert abs(ndcg_ray - ndcg_local) < 0.02, (ndcg_ray, ndcg_local)
    on_ray.save(tmp_path / "ray")
    local.save(tmp_path / "local")
    for name in ("ray", "local"):
        assert (tmp_path / name / "model-0.txt").read_text().startswith("tree\n")
    again = LTRRanker.load(tmp_path / "ray")
    np.testing.assert_allclose(again.predict(test), on_ray.predict(test), rtol=1e-6)
    assert again.config.engine == "ray" and again.features == FEATURES
