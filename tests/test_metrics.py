import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from fusionrank.evaluation.metrics import METRIC_FUNCTIONS
from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking


def test_hand_computed_case():
    # ranked list: [rel, non, rel, non, non]; |R| = 3
    hits = np.array([[1, 0, 1, 0, 0]], dtype=bool)
    n = np.array([3])
    f = METRIC_FUNCTIONS
    assert f["recall"](hits, n, 5)[0] == pytest.approx(2 / 3)
    assert f["precision"](hits, n, 5)[0] == pytest.approx(2 / 5)
    assert f["hit"](hits, n, 1)[0] == 1.0
    assert f["mrr"](hits, n, 5)[0] == 1.0
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert f["ndcg"](hits, n, 5)[0] == pytest.approx(dcg / idcg)
    assert f["map"](hits, n, 5)[0] == pytest.approx((1 + 2 / 3) / 3)
    # ideal DCG is cut at K: two relevant items at K = 1
    assert f["ndcg"](hits, n, 1)[0] == 1.0
    assert f["map"](hits, n, 2)[0] == pytest.approx(1 / 2)


def reference(scores, truth, exclude, k):
    """Plain per-user loop with the textbook definitions."""
    out = {m: [] for m in ("recall", "ndcg", "mrr", "hit", "precision", "map")}
    for u in range(scores.shape[0]):
        rel = set(np.flatnonzero(truth[u]))
        if not rel:
            continue
        order = [i for i in np.argsort(-scores[u]) if not exclude[u, i]][:k]
        hits = [i in rel for i in order]
        n_hit = sum(hits)
        out["recall"].append(n_hit / len(rel))
        out["precision"].append(n_hit / k)
        out["hit"].append(float(n_hit > 0))
        out["mrr"].append(next((1 / (j + 1) for j, h in enumerate(hits) if h), 0.0))
        dcg = sum(1 / math.log2(j + 2) for j, h in enumerate(hits) if h)
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
        out["ndcg"].append(dcg / idcg)
        ap, seen = 0.0, 0
        for j, h in enumerate(hits):
            if h:
                seen += 1
                ap += seen / (j + 1)
        out["map"].append(ap / min(len(rel), k))
    return {m: float(np.mean(v)) for m, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_a_reference_loop_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 57, 80
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
    truth = rng.random((n_users, n_items)) < 0.08
    exclude = (rng.random((n_users, n_items)) < 0.2) & ~truth
    result = evaluate_ranking(
        lambda u: scores[u],
        sp.csr_matrix(truth),
        sp.csr_matrix(exclude),
        EvalConfig(ks=(1, 5, 10, 20), chunk_size=13),
    )
    for k in (1, 5, 10, 20):
        ref = reference(scores, truth, exclude, k)
        for m, v in ref.items():
            assert result.metrics[f"{m}@{k}"] == pytest.approx(v, abs=1e-9), (m, k)


def test_chunk_size_does_not_change_results_and_excluded_items_never_appear():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(40, 30)).astype(np.float32)
    truth = sp.csr_matrix(rng.random((40, 30)) < 0.1)
    exclude = sp.csr_matrix(rng.random((40, 30)) < 0.3)
    a = evaluate_ranking(lambda u: scores[u], truth, exclude, EvalConfig(ks=(10,), chunk_size=1))
    b = evaluate_ranking(lambda u: scores[u], truth, exclude, EvalConfig(ks=(10,), chunk_size=1000))
    assert a.metrics == b.metrics
    users = a.per_user["user_idx"].to_numpy()
    for row, u in zip(a.top_items, users):
        assert not exclude[u, row[row >= 0]].toarray().any()


def test_item_mask_restricts_candidates_and_coverage_popularity():
    scores = np.tile(np.arange(6, 0, -1, dtype=np.float32), (2, 1))  # item 0 best
    truth = sp.csr_matrix(np.array([[0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]]))
    mask = np.array([False, False, False, False, True, True])
    r = evaluate_ranking(
        lambda u: scores[u],
        truth,
        None,
        EvalConfig(ks=(1, 2)),
        item_mask=mask,
        popularity=np.arange(6, dtype=float),
    )
    assert r.metrics["hit@1"] == 0.5 and r.metrics["hit@2"] == 1.0
    assert r.metrics["coverage@1"] == pytest.approx(1 / 6)
    assert r.metrics["popularity@2"] == pytest.approx(4.5)
    assert (r.top_items[:, :2] >= 4).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.integers(0, 10_000))
def test_properties(n_items, k, seed):
    rng = np.random.default_rng(seed)
    truth = rng.random((5, n_items)) < 0.4
    truth[:, 0] = True
    scores = rng.random((5, n_items))
    perfect = np.where(truth, 1.0 + scores, scores)  # every relevant item above the rest
    cfg = EvalConfig(ks=tuple(sorted({k, k + 1})))
    r = evaluate_ranking(lambda u: scores[u], sp.csr_matrix(truth), None, cfg)
    p = evaluate_ranking(lambda u: perfect[u], sp.csr_matrix(truth), None, cfg)
    for name, v in r.metrics.items():
        if not name.startswith(("coverage", "popularity")):
            assert 0.0 <= v <= 1.0 + 1e-12
    for m in ("ndcg", "hit", "mrr", "map"):
        assert p.metrics[f"{m}@{k}"] == pytest.approx(1.0)
    assert r.metrics[f"recall@{k + 1}"] >= r.metrics[f"recall@{k}"]
    assert r.metrics[f"hit@{k + 1}"] >= r.metrics[f"hit@{k}"]


def test_share_of_marked_items_in_top_k_and_in_truth():
    # items 0-1 are "cold"; user 0's top-2 is (3, 0), user 1's is (1, 2)
    scores = np.array([[0.8, 0.1, 0.2, 0.9], [0.1, 0.9, 0.5, 0.3]], np.float32)
    truth = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 0, 1, 0]]))
    cold = np.array([True, True, False, False])
    result = evaluate_ranking(
        lambda users: scores[users], truth, None, EvalConfig(ks=(1, 2)), share_items=cold
    )
    assert result.metrics["share@1"] == 0.5  # slots: 3 (warm), 1 (cold)
    assert result.metrics["share@2"] == 0.5  # slots: 3, 0, 1, 2: two cold of four
    assert result.metrics["truth_share"] == pytest.approx(1 / 3)  # relevant: 0, 3, 2
    named = evaluate_ranking(
        lambda users: scores[users], truth, None, EvalConfig(ks=(1, 2)), share_items=cold, share_name="cold"
    )
    assert named.metrics["cold_share@2"] == 0.5 and named.metrics["cold_truth_share"] == pytest.approx(1 / 3)
    plain = evaluate_ranking(lambda users: scores[users], truth, None, EvalConfig(ks=(1, 2)))
    assert "share@1" not in plain.metrics and "truth_share" not in plain.metrics


def test_cold_items_protocol_a_scores_the_cold_truth_and_b_the_mixed_one():
    import dataclasses

    from helpers import split_of

    import fusionrank as fr
    from fusionrank.data.splits import SplitConfig

    # items 0-1 warm, 2-3 cold; user 2's only test item is warm
    train = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]])
    test = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0]])
    split = split_of(train, test=test, kind="cold-items", meta={"cold_items": ["i2", "i3"]})
    split = dataclasses.replace(split, config=SplitConfig(kind="cold-items", warm_test_ratio=0.1))
    result = fr.evaluate(fr.build_model("pop").fit(split), split, ks=(1, 2))
    assert result.n_users == 2  # (a): users with a cold test item, against their cold items only
    assert result.metrics["recall@2"] == 1.0  # both cold items ranked: each user's cold truth is found
    assert result.all_items is not None
    assert result.all_items["cold_truth_share"] == pytest.approx(2 / 4)  # (b): truth 1, 2 | 3 | 1
