"""Cold-start and cross-domain models on data with planted structure."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from fusionrank.collab.pop import Pop
from fusionrank.data.dataset import Dataset
from fusionrank.encoders.kg import TransEConfig, embed_kg
from fusionrank.encoders.vectors import read_vectors
from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking
from fusionrank.fusion.cold_items import (
    ContentKNN,
    EASEContent,
    GenrePop,
    Hybrid,
    HybridConfig,
    RandomScores,
    TwoTower,
    TwoTowerConfig,
)
from fusionrank.fusion.content import Content
from fusionrank.fusion.cross_domain import (
    EMCDR,
    CrossDomain,
    CrossDomainConfig,
    TargetPop,
    make_cross_domain_split,
)
from fusionrank.fusion.profiles import DemographicPop, Profile, ProfileConfig

K = 4  # planted tastes


def planted_matrix(n_users=120, n_items=80, p=0.5, seed=0):
    rng = np.random.default_rng(seed)
    taste = np.arange(n_users) % K
    block = np.arange(n_items) % K
    x = (rng.random((n_users, n_items)) < p) & (taste[:, None] == block[None, :])
    return sp.csr_matrix(x.astype(np.float32)), taste, block


def test_transe_places_items_of_a_cluster_together(tmp_path):
    heads, rels, tails, links = [], [], [], []
    for i in range(40):
        links.append((f"i{i}", f"m.{i}"))
        heads.append(f"m.{i}"), rels.append("genre"), tails.append(f"g.{i % 2}")
        heads.append(f"m.{i}"), rels.append("director"), tails.append(f"d.{i % 2}")
    (tmp_path / "x.kg").write_text(
        "head_id:token\trelation_id:token\ttail_id:token\n"
        + "\n".join(f"{h}\t{r}\t{t}" for h, r, t in zip(heads, rels, tails))
        + "\n"
    )
    (tmp_path / "x.link").write_text(
        "item_id:token\tentity_id:token\n" + "\n".join(f"{a}\t{b}" for a, b in links) + "\n"
    )
    cfg = TransEConfig(dim=16, epochs=150, batch_size=16, learning_rate=0.02, progress=False)
    manifest = embed_kg(
        tmp_path / "x.kg", tmp_path / "x.link", tmp_path / "out", cfg, items=["i0", "i1", "i2", "zz"]
    )
    assert (manifest["rows"], manifest["errors"]) == (3, 1)
    full = embed_kg(tmp_path / "x.kg", tmp_path / "x.link", tmp_path / "all", cfg)
    ids, vecs = read_vectors(tmp_path / "all")
    assert full["rows"] == 40
    sims = vecs @ vecs.T
    same = np.equal.outer(np.arange(40) % 2, np.arange(40) % 2)
    assert sims[same].mean() > sims[~same].mean() + 0.3
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "out" / "errors.parquet"),
        pd.DataFrame({"item_id": ["zz"], "reason": ["no knowledge-graph entity"]}),
    )


def _cold_setup():
    x, taste, block = planted_matrix()
    rng = np.random.default_rng(1)
    cold = rng.choice(x.shape[1], 40, replace=False)
    train = x.tolil()
    train[:, cold] = 0
    train = sp.csr_matrix(train)
    train.eliminate_zeros()
    test_full = sp.lil_matrix(x.shape)
    test_full[:, cold] = x[:, cold]
    content = np.eye(K, dtype=np.float32)[block] + 0.3 * rng.normal(size=(x.shape[1], K)).astype(np.float32)
    genres = sp.csr_matrix(np.eye(K, dtype=np.float32)[block])
    mask = np.zeros(x.shape[1], bool)
    mask[cold] = True
    return (
        train,
        sp.csr_matrix(test_full),
        Content(content, np.ones(x.shape[1], bool), ("text",)),
        genres,
        mask,
    )


def _ndcg_cold(model, train, test, mask):
    return evaluate_ranking(model.score, test, None, EvalConfig(ks=(10,)), item_mask=mask).metrics["ndcg@10"]


def test_cold_item_models_use_content():
    train, test, content, genres, mask = _cold_setup()
    random = _ndcg_cold(RandomScores().fit(train, content), train, test, mask)
    scores = {
        "genre-pop": _ndcg_cold(GenrePop(genres=genres).fit(train, content), train, test, mask),
        "content-knn": _ndcg_cold(ContentKNN().fit(train, content), train, test, mask),
        "ease-content": _ndcg_cold(EASEContent().fit(train, content), train, test, mask),
        "hybrid": _ndcg_cold(
            Hybrid(HybridConfig(epochs=10, batch_size=128, hidden=16, reg=10)).fit(train, content),
            train,
            test,
            mask,
        ),
        "two-tower": _ndcg_cold(
            TwoTower(TwoTowerConfig(epochs=40, batch_size=128, dim=16, hidden=32, patience=40)).fit(
                train, content
            ),
            train,
            test,
            mask,
        ),
    }
    assert random < 0.35, random
    for name in ("content-knn", "ease-content", "hybrid", "two-tower"):
        # the planted taste is recoverable from content alone; genre popularity is not personal
        assert scores[name] > max(random, scores["genre-pop"]) + 0.25, (random, scores)
    tower = TwoTower(TwoTowerConfig(epochs=3, batch_size=256, dim=16, hidden=32)).fit(train, content)
    assert tower.item_vectors().shape == (train.shape[1], 16)


def test_cold_users_are_served_from_side_features():
    x, taste, _ = planted_matrix(seed=3)
    features = np.eye(K, dtype=np.float32)[taste]
    cold = np.arange(0, x.shape[0], 10)
    train = x.tolil()
    train[cold] = 0
    train = sp.csr_matrix(train)
    train.eliminate_zeros()
    test = sp.csr_matrix(x.toarray() * np.isin(np.arange(x.shape[0]), cold)[:, None])

    def ndcg(model):
        return evaluate_ranking(model.score, test, train, EvalConfig(ks=(10,))).metrics["ndcg@10"]

    pop = ndcg(Pop().fit(train))
    demo = ndcg(DemographicPop().fit(train, features))
    fitted = Profile(ProfileConfig(epochs=10)).fit(train, features)
    profile = ndcg(fitted)
    # a user without history is served from side features alone
    np.testing.assert_allclose(fitted.score(cold[:3]), fitted.score_features(features[cold[:3]]), rtol=1e-5)
    assert demo > pop + 0.2 and profile > pop + 0.2, (pop, demo, profile)


def test_cross_domain_serves_cold_users_from_the_source_domain():
    rng = np.random.default_rng(5)
    genres = {0: "Drama", 1: "Action"}
    items = pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(80)], "class": [[genres[i % 2]] for i in range(80)]}
    )
    rows = []
    for u in range(160):
        taste = u % K
        for i in range(80):
            if (i // 2) % K == taste and rng.random() < 0.6:
                rows.append((f"u{u}", f"i{i}", 1.0, float(len(rows))))
    data = Dataset(
        "xd", pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]), items=items
    )
    split = make_cross_domain_split(data, seed=1)
    assert set(split.domain) == {"A", "B"} and len(split.test_users) > 10
    assert not set(split.test_users) & set(split.train[split.domain[split.train.item_idx] == "B"].user_idx)
    truth = split.matrix(split.test, "B")
    mask = split.domain == "B"

    def ndcg(model):
        return evaluate_ranking(
            model.score, truth, None, EvalConfig(ks=(10,)), item_mask=mask, users=split.test_users
        ).metrics["ndcg@10"]

    pop = ndcg(TargetPop().fit(split))
    emcdr = ndcg(EMCDR().fit(split))
    xd = ndcg(CrossDomain(CrossDomainConfig(epochs=20, batch_size=32)).fit(split))
    assert xd > pop + 0.2 and emcdr > pop, (pop, emcdr, xd)


def test_content_models_need_their_inputs():
    train, _, content, _, _ = _cold_setup()
    with pytest.raises(ValueError, match="genre"):
        GenrePop().fit(train, content)
    with pytest.raises(ValueError, match="features"):
        Profile().fit(train)
