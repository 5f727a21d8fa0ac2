"""Retrieval, the feature table and the LightGBM ranker on small planted data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from fusionrank.columns import ITEM_IDX, TIMESTAMP, USER_IDX
from fusionrank.engines import ENGINES, SERIAL_BOOSTING
from fusionrank.engines.local import LocalEngine
from fusionrank.features.table import (
    FeatureConfig,
    FeatureContext,
    attach_labels,
    build_features,
    feature_columns,
    feature_group,
)
from fusionrank.ranker.lgbm import TUNING_GRID, LTRRanker, RankerConfig, groups_of
from fusionrank.retrieval.candidates import (
    candidate_recall,
    candidate_recall_by_source,
    source_candidates,
    union_candidates,
)
from fusionrank.retrieval.index import IndexConfig, VectorIndex, faiss_available, mips_vectors


def _scores(seed=0, n_users=6, n_items=9):
    return np.random.default_rng(seed).random((n_users, n_items)).astype(np.float32)


def test_source_candidates_exclude_known_items_and_rank_by_score():
    s = _scores()
    known = sp.csr_matrix(np.eye(6, 9, dtype=np.float32))
    c = source_candidates(lambda u: s[u], np.arange(6), 3, known)
    for u, rows in c.groupby(USER_IDX):
        masked = s[u].copy()
        masked[u] = -np.inf
        assert rows[ITEM_IDX].tolist() == np.argsort(-masked)[:3].tolist()
        assert rows["rank"].tolist() == [1, 2, 3]
        assert u not in rows[ITEM_IDX].tolist()


def test_union_keeps_each_sources_rank_and_recall_counts_pairs():
    a = pd.DataFrame({USER_IDX: [0, 0, 1], ITEM_IDX: [1, 2, 3], "rank": [1, 2, 1]})
    b = pd.DataFrame({USER_IDX: [0, 1], ITEM_IDX: [2, 4], "rank": [1, 1]})
    u = union_candidates({"a": a, "b": b})
    assert list(zip(u[USER_IDX], u[ITEM_IDX])) == [(0, 1), (0, 2), (1, 3), (1, 4)]
    assert u["n_sources"].tolist() == [1, 2, 1, 1]
    assert u.loc[1, "rank_a"] == 2 and u.loc[1, "rank_b"] == 1 and np.isnan(u.loc[0, "rank_b"])
    truth = sp.csr_matrix(([1, 1, 1, 1], ([0, 0, 1, 1], [2, 5, 4, 0])), shape=(2, 6))
    assert candidate_recall(u, truth) == 0.5
    rec = candidate_recall_by_source({"a": a, "b": b}, truth)
    assert rec == {"a": 0.25, "b": 0.5, "union": 0.5}


def test_exact_index_matches_brute_force_with_bias_and_exclusions():
    rng = np.random.default_rng(1)
    users, items, bias = rng.normal(size=(20, 8)), rng.normal(size=(50, 8)), rng.normal(size=50)
    uq, iq = mips_vectors(users, items, bias)
    full = users @ items.T + bias
    known = sp.random(20, 50, density=0.2, random_state=1, format="csr")
    idx, vals = VectorIndex(iq).search(uq, 5, known)
    full[known.nonzero()] = -np.inf
    assert (idx == np.argsort(-full, axis=1)[:, :5]).all()
    np.testing.assert_allclose(vals, np.sort(full, axis=1)[:, ::-1][:, :5], rtol=1e-5)


@pytest.mark.skipif(not faiss_available(), reason="FAISS is an optional extra")
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_faiss_indexes_agree_with_exact_search(kind):
    rng = np.random.default_rng(2)
    users, items = (
        rng.normal(size=(30, 16)).astype(np.float32),
        rng.normal(size=(2000, 16)).astype(np.float32),
    )
    known = sp.random(30, 2000, density=0.01, random_state=2, format="csr")
    exact, _ = VectorIndex(items).search(users, 10, known)
    got, _ = VectorIndex(items, IndexConfig(kind=kind, ivf_lists=16, nprobe=16)).search(users, 10, known)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, got)])
    assert overlap == 1.0 if kind == "flat" else overlap >= 0.9
    for r in range(30):
        assert not set(got[r]) & set(known[r].indices)


def _ctx():
    # 3 users, 5 items; item 4 is never in training
    train = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [1, 0, 0, 1, 0]], np.float32))
    inter = pd.DataFrame(
        {
            USER_IDX: [0, 0, 1, 1, 2, 2],
            ITEM_IDX: [0, 1, 1, 2, 0, 3],
            TIMESTAMP: [0.0, 86400.0, 2 * 86400.0, 40 * 86400.0, 41 * 86400.0, 45 * 86400.0],
        }
    )
    text = np.array([[1, 0], [0, 1], [1, 1], [1, 0], [0, 0]], np.float32)
    genres = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 1], [1, 0], [0, 1]], np.float32))
    scores = np.arange(15, dtype=np.float32).reshape(3, 5)
    side = pd.DataFrame(
        {"age": np.array([20, 30, 40], np.float32), "gender": pd.Categorical(["F", "M", "F"])}
    )
    return FeatureContext(
        train=train,
        sources={"s": lambda u: scores[u]},
        interactions=inter,
        content={"text": text},
        genres=genres,
        user_side=side,
        domains=np.array(["A", "B", "A", "", "B"]),
        item_item=np.ones((5, 5), np.float32) - np.eye(5, dtype=np.float32),
    )


def test_feature_table_values_by_hand():
    ctx = _ctx()
    cands = pd.DataFrame({USER_IDX: [0, 0, 1], ITEM_IDX: [4, 2, 0]})
    f = build_features(cands, ctx, ctx.train, FeatureConfig(window_days=10))
    assert f[[USER_IDX, ITEM_IDX]].values.tolist() == [[0, 2], [0, 4], [1, 0]]  # sorted by user, item
    # user 0 knows items 0, 1: item 4 has the highest free score (rank 1), item 2 is rank 3
    assert f["rank_s"].tolist() == [3, 1, 3]
    free = np.array([2.0, 3.0, 4.0])
    assert f.loc[0, "z_s"] == pytest.approx((2 - free.mean()) / free.std(), rel=1e-5)
    # profile of user 0 = (1,0) + (0,1) -> cos with item 2 (1,1) is 1; item 4 has no vector;
    # user 1 = (0,1) + (1,1)/sqrt(2) -> cos with item 0 (1,0) = 0.7071 / |(0.7071, 1.7071)|
    assert f["cos_text"].tolist() == pytest.approx([1.0, 0.0, 0.70711 / np.hypot(0.70711, 1.70711)], rel=1e-4)
    assert f["pop_log"].tolist() == pytest.approx(np.log1p([1, 0, 2]))
    # last 10 days of training hold items 2, 0, 3
    assert f["pop_recent_log"].tolist() == pytest.approx(np.log1p([1, 0, 1]))
    # user 0's last interaction is day 1; item 2 first seen on day 40
    assert f.loc[0, "item_age_days"] == pytest.approx(-39.0)
    assert np.isnan(f.loc[1, "item_age_days"])
    # user 0 history genres: item0 g0, item1 g1 -> shares (0.5, 0.5); item 2 has both -> 0.5
    assert f["genre_overlap"].tolist() == pytest.approx([0.5, 0.5, 0.5])
    # item 2 is domain B; user 0's history: item 0 (A), item 1 (B) -> share 0.5;
    # transfer from the other domain (A: item 0) with all-ones weights = 1
    assert f.loc[0, "domain_share"] == 0.5 and f.loc[0, "domain_transfer"] == 1.0
    assert f["user_age"].tolist() == [20, 20, 30]
    assert str(f["user_gender"].dtype) == "category"
    assert {feature_group(c) for c in feature_columns(f)} == {
        "sources",
        "content",
        "popularity",
        "user",
        "genre",
        "cross_domain",
        "history",
        "agreement",
        "context",
    }
    labelled = attach_labels(f, sp.csr_matrix(([1], ([0], [4])), shape=(3, 5)))
    assert labelled["label"].tolist() == [0, 1, 0]


def test_history_agreement_and_context_by_hand():
    ctx = _ctx()
    cands = pd.DataFrame({USER_IDX: [0, 0, 1], ITEM_IDX: [4, 2, 0]})
    f = build_features(cands, ctx, ctx.train, FeatureConfig(recent=1))
    # user 0's history: items 0 (1,0) and 1 (0,1); item 2 is (1,1)/sqrt(2): cosine 0.7071 with both
    r = 1 / np.sqrt(2)
    assert f.loc[0, ["hist_text_max", "hist_text_top3", "hist_text_mean"]].tolist() == pytest.approx(
        [r, r, r]
    )
    # user 1's history: items 1 (0,1) and 2 (1,1)/sqrt(2); item 0 is (1,0): cosines 0 and 0.7071
    assert f.loc[2, ["hist_text_max", "hist_text_top3", "hist_text_mean"]].tolist() == pytest.approx(
        [r, r / 2, r / 2]
    )
    # recent=1: user 1's latest training item is item 2 (day 40), cosine 0.7071 with item 0
    assert f.loc[2, "hist_text_recent"] == pytest.approx(r)
    # the item-item weights are all ones off the diagonal: every history item counts 1
    assert f.loc[0, ["hist_ii_max", "hist_ii_mean"]].tolist() == [1.0, 1.0]
    # co-occurrence: items 0 and 2 never share a user, items 1 and 2 do (user 1)
    assert f.loc[2, "hist_co_max"] > 0 and f.loc[1, "hist_co_max"] == 0  # item 4: no training user
    # one source: the ranks are the agreement; item 4 ranks 1 for user 0, top 10 of one source
    assert f["agree_best_rank"].tolist() == f["rank_s"].tolist() == f["agree_mean_rank"].tolist()
    assert f["agree_top10"].tolist() == [1.0, 1.0, 1.0]
    # user 0's free scores are 2, 3, 4: their spread, and (first - tenth) / spread with 3 free items
    assert f.loc[0, "ctx_std_s"] == pytest.approx(np.std([2.0, 3.0, 4.0]), rel=1e-5)
    assert f.loc[0, "ctx_std_s"] == f.loc[1, "ctx_std_s"]  # per user
    assert f.loc[0, "ctx_gap_s"] == 0.0  # fewer than 10 free items: no tenth score


def test_feature_groups_can_be_switched_off():
    ctx = _ctx()
    cands = pd.DataFrame({USER_IDX: [0], ITEM_IDX: [2]})
    f = build_features(cands, ctx, ctx.train, FeatureConfig(groups=("popularity",)))
    assert {feature_group(c) for c in feature_columns(f)} == {"popularity"}
    with pytest.raises(ValueError, match="unknown feature groups"):
        FeatureConfig(groups=("nope",))


def _planted(n_users=300, n_items=30, seed=0):
    """One informative feature (signal) and one pure-noise feature."""
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(n_users), n_items)
    signal = rng.normal(size=len(u))
    label = (signal + 0.3 * rng.normal(size=len(u)) > 1.5).astype(int)
    return pd.DataFrame({USER_IDX: u, "signal": signal, "noise": rng.normal(size=len(u)), "label": label})


def test_ranker_learns_the_planted_feature_and_round_trips(tmp_path):
    table = _planted()
    ranker = LTRRanker(RankerConfig(n_estimators=200, min_child_samples=20, seed=1)).fit(
        table, ["signal", "noise"]
    )
    assert ranker.importance().loc[0, "feature"] == "signal"
    assert ranker.stop_score > 0.8
    test = _planted(seed=5)
    pred = ranker.predict(test)
    # contributions add up to the prediction
    contrib = ranker.contributions(test.head(50))
    np.testing.assert_allclose(contrib.sum(axis=1), pred[:50], rtol=1e-6, atol=1e-6)
    assert contrib["signal"].abs().mean() > contrib["noise"].abs().mean()
    ranker.save(tmp_path / "r")
    again = LTRRanker.load(tmp_path / "r")
    np.testing.assert_allclose(again.predict(test), pred)


def test_ranker_same_seed_same_model_and_clear_errors():
    table = _planted(n_users=100)
    a = LTRRanker(RankerConfig(n_estimators=50, seed=3)).fit(table, ["signal", "noise"]).predict(table)
    b = LTRRanker(RankerConfig(n_estimators=50, seed=3)).fit(table, ["signal", "noise"]).predict(table)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(KeyError, match="nope"):
        LTRRanker().fit(table, ["nope"])
    with pytest.raises(ValueError, match="sorted by user"):
        groups_of(np.array([1, 0, 1]))
    with pytest.raises(RuntimeError, match="not fitted"):
        LTRRanker().predict(table)


def test_bagged_ranker_averages_its_boosters(tmp_path):
    table = _planted(n_users=150)
    bagged = LTRRanker(RankerConfig(n_estimators=60, min_child_samples=20, bags=3, seed=4)).fit(
        table, ["signal", "noise"]
    )
    singles = [
        LTRRanker(RankerConfig(n_estimators=60, min_child_samples=20, seed=4 + b)).fit(
            table, ["signal", "noise"]
        )
        for b in range(3)
    ]
    np.testing.assert_allclose(bagged.predict(table), np.mean([r.predict(table) for r in singles], axis=0))
    contrib = bagged.contributions(table.head(20))
    np.testing.assert_allclose(contrib.sum(axis=1), bagged.predict(table.head(20)), atol=1e-6)
    bagged.save(tmp_path / "bag")
    np.testing.assert_allclose(LTRRanker.load(tmp_path / "bag").predict(table), bagged.predict(table))
    with pytest.raises(ValueError, match="bags"):
        RankerConfig(bags=0)


class _Recording(LocalEngine):
    """The local engine, noting which users each booster trained and stopped on."""

    def __init__(self) -> None:
        super().__init__()
        self.fits: list[tuple[set[int], set[int] | None]] = []

    def train_booster(self, params, train, stop, rounds, early_stopping_rounds, **where):
        self.fits.append((set(train.users.tolist()), None if stop is None else set(stop.users.tolist())))
        return super().train_booster(params, train, stop, rounds, early_stopping_rounds, **where)


def test_cross_fitted_boosters_each_stop_on_one_fold_and_never_train_on_it(tmp_path):
    table = _planted(n_users=120)
    engine = _Recording()
    ranker = LTRRanker(RankerConfig(n_estimators=60, min_child_samples=20, stop_folds=3, seed=2), engine).fit(
        table, ["signal", "noise"]
    )
    assert len(ranker.boosters) == len(ranker.iterations) == 3
    assert all(stop is not None for _, stop in engine.fits)  # no refit without a stopping set
    stops = [stop for _, stop in engine.fits]
    assert set().union(*stops) == set(table.loc[table["label"] > 0, USER_IDX])  # every label user stops one
    assert all(not (a & b) for i, a in enumerate(stops) for b in stops[i + 1 :])
    for trained, stop in engine.fits:
        assert not (trained & stop) and len(trained | stop) == 120 - _no_positive(table)
    np.testing.assert_allclose(
        ranker.predict(table),
        np.mean(
            [
                b.predict(table[["signal", "noise"]], num_iteration=n)
                for b, n in zip(ranker.boosters, ranker.iterations)
            ],
            axis=0,
        ),
    )
    ranker.save(tmp_path / "cf")
    np.testing.assert_allclose(LTRRanker.load(tmp_path / "cf").predict(table), ranker.predict(table))
    assert ranker.importance().loc[0, "feature"] == "signal"
    with pytest.raises(ValueError, match="stop_folds"):
        RankerConfig(stop_folds=1)
    with pytest.raises(ValueError, match="stop_folds 500 is more than"):
        LTRRanker(RankerConfig(stop_folds=500)).fit(table, ["signal", "noise"])


def _no_positive(table: pd.DataFrame) -> int:
    return int((table.groupby(USER_IDX)["label"].sum() == 0).sum())


def test_binary_objective_learns_the_planted_feature():
    table = _planted(n_users=150)
    ranker = LTRRanker(RankerConfig(n_estimators=80, min_child_samples=20, objective="binary", seed=3)).fit(
        table, ["signal", "noise"]
    )
    assert ranker.importance().loc[0, "feature"] == "signal"
    assert ranker.stop_score > 0.8  # NDCG of the held-out users, the same stopping metric
    assert "binary" in {change.get("objective") for change in TUNING_GRID}


def test_linear_leaves_fit_and_their_explanations_add_up_to_the_raw_score(tmp_path):
    table = _planted(n_users=150)
    rng = np.random.default_rng(9)
    table["kind"] = pd.Categorical(rng.choice(["a", "b", "c"], len(table)))  # never in a linear model
    table.loc[table.index[::7], "noise"] = np.nan  # missing values take the leaf's fallback value
    cfg = RankerConfig(n_estimators=60, min_child_samples=20, objective="binary", stop_folds=3, seed=3)
    linear = LTRRanker(dataclasses.replace(cfg, linear_tree=True)).fit(table, ["signal", "noise", "kind"])
    model = linear.boosters[0].dump_model()
    assert any("leaf_coeff" in str(tree) for tree in model["tree_info"])  # linear leaves were fitted
    assert linear.importance().loc[0, "feature"] == "signal"
    rows = table.head(80)
    contrib = linear.contributions(rows)
    raw = np.mean(
        [
            b.predict(rows[linear.features], num_iteration=n, raw_score=True)
            for b, n in zip(linear.boosters, linear.iterations)
        ],
        axis=0,
    )
    np.testing.assert_allclose(contrib.sum(axis=1), raw, atol=1e-9)
    assert contrib["signal"].abs().mean() > contrib["noise"].abs().mean()
    constant = LTRRanker(cfg).fit(table, ["signal", "noise", "kind"])
    assert not np.allclose(constant.predict(rows), linear.predict(rows))
    linear.save(tmp_path / "lin")
    loaded = LTRRanker.load(tmp_path / "lin")
    loaded.prepare_contributions()  # what a service does when it loads the run
    assert [e.booster for e in loaded._explainers] == loaded.boosters
    np.testing.assert_allclose(loaded.predict(table), linear.predict(table))
    np.testing.assert_allclose(loaded.contributions(rows), contrib)  # the trees read once, kept
    np.testing.assert_allclose(loaded.contributions(rows.tail(5)), contrib.tail(5))
    assert set(SERIAL_BOOSTING) == set(ENGINES)  # every engine says how it boosts
    with pytest.raises(ValueError, match="linear_tree needs an engine that boosts serially"):
        RankerConfig(linear_tree=True, engine="ray")
    with pytest.raises(ValueError, match="linear_lambda"):
        RankerConfig(linear_lambda=-1)


def _ranked(n_users=200, n_items=30, seed=0):
    """The planted table with a source rank per row: positives sit at ranks 1..n_items in
    a random order, so a shallow depth cuts some of them off."""
    table = _planted(n_users, n_items, seed)
    rng = np.random.default_rng(seed + 1)
    ranks = np.concatenate([rng.permutation(n_items) + 1 for _ in range(n_users)]).astype(np.float32)
    return table.assign(rank_s=ranks)


def test_candidate_depth_ranks_rows_beyond_it_last_and_fits_within_it(tmp_path):
    table = _ranked()
    cfg = RankerConfig(n_estimators=60, min_child_samples=20, seed=1, candidates=[10])
    ranker = LTRRanker(cfg).fit(table, ["signal", "noise"])
    assert ranker.config.candidates == (10,) and ranker.depth == 10
    assert ranker.columns == ["signal", "noise", "rank_s"]  # the depth reads the rank column
    pred = ranker.predict(table)
    assert np.isneginf(pred[table["rank_s"].to_numpy() > 10]).all()
    assert np.isfinite(pred[table["rank_s"].to_numpy() <= 10]).all()
    ranker.save(tmp_path / "r")
    again = LTRRanker.load(tmp_path / "r")
    np.testing.assert_array_equal(again.predict(table), pred)
    assert again.depth == 10 and again.pool == ["rank_s"]


def test_several_depths_keep_the_one_the_held_out_users_rank_best_over_the_pool(tmp_path):
    table = _ranked()
    cfg = RankerConfig(n_estimators=60, min_child_samples=20, seed=1)
    chosen = LTRRanker(dataclasses.replace(cfg, candidates=(30, 3))).fit(table, ["signal", "noise"])
    scores = chosen.depth_scores
    # depth 3 cuts most positives off (they rank last), which the pool score pays for
    assert set(scores) == {"30", "3"} and scores["3"] < scores["30"]
    assert chosen.depth == 30 and chosen.config.candidates == (30,) and chosen.pool_score == scores["30"]
    chosen.save(tmp_path / "r")
    again = LTRRanker.load(tmp_path / "r")
    assert again.depth_scores == scores
    np.testing.assert_array_equal(again.predict(table), chosen.predict(table))
    # the same data and seed: the same choice and boosters
    twice = LTRRanker(dataclasses.replace(cfg, candidates=(30, 3))).fit(table, ["signal", "noise"])
    np.testing.assert_array_equal(twice.predict(table), chosen.predict(table))
    with pytest.raises(ValueError, match="distinct depths"):
        RankerConfig(candidates=(0,))
    with pytest.raises(ValueError, match="rank_<source>"):
        LTRRanker(RankerConfig(candidates=(5,))).fit(_planted(), ["signal", "noise"])


def test_pool_ndcg_by_hand():
    from fusionrank.ranker.lgbm import _pool_ndcg

    class Fixed:  # a booster whose scores are the table's "s" column
        def predict(self, x, num_iteration=None):
            return held["s"].to_numpy()

    held = pd.DataFrame({USER_IDX: [0, 0, 0], "s": [3.0, 2.0, 1.0], "label": [0, 1, 1]})
    # all kept: positives at positions 2 and 3 of 3
    want = (1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    got = _pool_ndcg(held, np.ones(3, bool), Fixed(), 1, ["s"], "label", USER_IDX, 10)
    assert got == pytest.approx(want)
    # the negative on top is cut off (ranks last): both positives move up, the ideal order
    cut = _pool_ndcg(held, np.array([False, True, True]), Fixed(), 1, ["s"], "label", USER_IDX, 10)
    assert cut == pytest.approx(1.0)
    # cutting a positive off: it ranks last, behind the negative
    lost = _pool_ndcg(held, np.array([True, False, True]), Fixed(), 1, ["s"], "label", USER_IDX, 2)
    assert lost == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
