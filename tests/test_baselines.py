"""The neighbourhood and linear baselines against naive formulas, and their ml-100k range.
(The contract every model keeps is checked in ``test_model_contract.py``.)"""

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import split_of

import fusionrank as fr
from fusionrank.collab.ease import EASE, EASEConfig
from fusionrank.collab.ials import IALS, IALSConfig, als_half_step, als_half_step_cg
from fusionrank.collab.itemknn import ItemKNN, ItemKNNConfig
from fusionrank.collab.neighbours import RP3beta, RP3betaConfig, UserKNN, UserKNNConfig


def _train(seed=0, n_users=25, n_items=18):
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < 0.25).astype(np.float32))


def test_ease_matches_the_closed_form():
    x = _train(2).toarray().astype(np.float64)
    lam = 7.0
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)
    np.testing.assert_allclose(EASE(EASEConfig(reg=lam)).fit(split_of(x)).weights, b, atol=1e-5)


def test_itemknn_matches_a_naive_loop():
    x = _train(3).toarray()
    k, shrink = 4, 2.0
    n = x.shape[1]
    norms = np.sqrt((x**2).sum(0))
    w = np.zeros((n, n))
    for j in range(n):
        sims = np.array([x[:, i] @ x[:, j] / (norms[i] * norms[j] + shrink + 1e-6) for i in range(n)])
        sims[j] = 0
        for i in np.argsort(-sims, kind="stable")[:k]:
            w[i, j] = sims[i]
    model = ItemKNN(ItemKNNConfig(k=k, shrink=shrink)).fit(split_of(x))
    np.testing.assert_allclose(model.score(np.arange(x.shape[0])), x @ w, rtol=1e-5, atol=1e-6)


def test_bad_configs():
    with pytest.raises(ValueError):
        EASEConfig(reg=0)
    with pytest.raises(ValueError):
        ItemKNNConfig(k=0)


def test_ml100k_baselines_order_and_ranges(ml100k):
    split = fr.split(ml100k, "ratio", seed=2020)
    ndcg = {
        name: fr.evaluate(fr.build_model(name).fit(split), split, ks=(10,)).metrics["ndcg@10"]
        for name in ("pop", "itemknn", "ease")
    }
    assert 0.11 < ndcg["pop"] < 0.16
    assert 0.26 < ndcg["itemknn"] < 0.31  # RecBole ItemKNN: 0.283 on the same protocol
    assert 0.31 < ndcg["ease"] < 0.36


def test_userknn_and_rp3beta_match_their_formulas():
    rng = np.random.default_rng(3)
    x = (rng.random((25, 30)) < 0.3).astype(np.float32)
    x[0] = 0
    x[0, :3] = 1
    train = split_of(x)
    users = np.arange(25)
    # user KNN with k >= all users: every other user weighs by cosine
    norms = np.linalg.norm(x, axis=1)
    cos = (x @ x.T) / (np.outer(norms, norms) + 1e-6)
    np.fill_diagonal(cos, 0)
    got = UserKNN(UserKNNConfig(k=24)).fit(train).score(users)
    np.testing.assert_allclose(got, cos @ x, rtol=1e-4, atol=1e-5)
    # RP3beta with k >= all items
    pop = np.maximum(x.sum(0), 1)
    w = ((x.T / pop[:, None]) @ (x / np.maximum(x.sum(1, keepdims=True), 1))) ** 0.8 / pop[None, :] ** 0.4
    np.fill_diagonal(w, 0)
    got = RP3beta(RP3betaConfig(alpha=0.8, beta=0.4, k=29)).fit(train).score(users)
    np.testing.assert_allclose(got, x @ w, rtol=1e-4, atol=1e-6)
    # a smaller k keeps only the strongest weights
    small = RP3beta(RP3betaConfig(k=5)).fit(train)
    assert (np.diff(small.weights.indptr) <= 5).all()


def test_ials_half_step_solves_each_rows_weighted_least_squares(monkeypatch):
    """The blocked, flattened-outer-product solve equals the textbook one: for each row,
    (Y^T C_u Y + reg I)^-1 Y^T C_u p_u with C_u = 1 + alpha on observed cells, blocks smaller
    than both sides so every block boundary is crossed."""
    rng = np.random.default_rng(5)
    x = (rng.random((13, 11)) < 0.3).astype(np.float64)
    x[2] = 0  # a row with no cells solves to zero
    y = rng.standard_normal((11, 4))
    alpha, reg = 7.0, 0.5
    got = als_half_step(sp.csr_matrix(x), y.astype(np.float32), alpha, reg, block=3)
    for u in range(13):
        c = 1 + alpha * x[u]
        want = np.linalg.solve(y.T @ (c[:, None] * y) + reg * np.eye(4), y.T @ (c * x[u]))
        np.testing.assert_allclose(got[u], want, rtol=1e-4, atol=1e-5)
    assert not got[2].any()
    # conjugate gradient reaches the same solutions in at most `factors` steps (exact
    # arithmetic), from any start, through blocks cut by cell count as well as by rows
    start = rng.standard_normal((13, 4)).astype(np.float32)
    monkeypatch.setattr("fusionrank.collab.ials.CG_CELLS", 5)  # blocks of a row or two
    cg = als_half_step_cg(sp.csr_matrix(x), y.astype(np.float32), start, alpha, reg, steps=8, block=3)
    np.testing.assert_allclose(cg, got, rtol=1e-3, atol=1e-4)
    one = als_half_step_cg(sp.csr_matrix(x), y.astype(np.float32), start, alpha, reg, steps=1, block=3)
    assert np.abs(one - got).max() > 1e-3  # one step is not the solution: the steps matter


def test_ials_recovers_blocks_and_is_deterministic():
    """Two groups of users each taking (most of) their own half of the items: with two
    factors, users' unseen items of their own half outscore the other half's (pairwise, all
    users together), and a refit gives the same factors."""
    rng = np.random.default_rng(0)
    x = np.zeros((40, 20), np.float32)
    x[:20, :10] = rng.random((20, 10)) < 0.6
    x[20:, 10:] = rng.random((20, 10)) < 0.6
    train = split_of(x)
    config = IALSConfig(factors=2, iterations=8, reg=1.0, alpha=5.0, block_size=7)
    scores = IALS(config).fit(train).score(np.arange(40))
    own = np.where(np.arange(40)[:, None] < 20, np.arange(20)[None, :] < 10, np.arange(20)[None, :] >= 10)
    ordered = [
        (scores[u][own[u] & (x[u] == 0)][:, None] > scores[u][~own[u]][None, :]).mean()
        for u in range(40)
        if (own[u] & (x[u] == 0)).any()
    ]
    assert np.mean(ordered) > 0.95
    again = IALS(config).fit(train).score(np.arange(40))
    np.testing.assert_array_equal(scores, again)
    with pytest.raises(fr.InvalidArgumentError, match="reg > 0"):
        IALSConfig(reg=0)
