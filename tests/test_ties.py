"""The one tie rule: a ranking is higher score first, then the smaller item index, wherever
it is cut (evaluation, recommend, candidates, source ranks), whatever else was asked."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking
from fusionrank.features.table import SourceChunk, top_n_ranks
from fusionrank.scoring import ranked_topk, top_k


def reference_top(scores: np.ndarray, k: int) -> list[list[int]]:
    """Each row's top ``k`` by a full sort: score descending, then item index ascending;
    items at -inf are left out."""
    out = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))[:k]
        out.append([int(i) for i in order if row[i] > -np.inf])
    return out


def tied_scores(rng: np.random.Generator, n_rows: int, n_items: int, levels: int) -> np.ndarray:
    """Scores drawn from a few levels (many ties), some items at -inf (known items)."""
    s = rng.integers(0, levels, size=(n_rows, n_items)).astype(np.float32)
    s[rng.random((n_rows, n_items)) < 0.2] = -np.inf
    return s


@settings(max_examples=150, deadline=None)
@given(
    scores=st.integers(1, 6).flatmap(
        lambda rows: st.integers(1, 90).flatmap(
            lambda cols: arrays(
                np.float32,
                (rows, cols),
                elements=st.sampled_from([-np.inf, 0.0, 0.5, 1.0, 2.0, 3.0]),
            )
        )
    ),
    k=st.integers(1, 100),
)
def test_ranked_topk_is_the_full_sort_under_the_tie_rule(scores, k):
    vals, idx = ranked_topk(torch.from_numpy(scores), k)
    assert idx.shape == (scores.shape[0], min(k, scores.shape[1]))
    got = [[int(i) for i, v in zip(r, vr) if v > -np.inf] for r, vr in zip(idx.tolist(), vals.tolist())]
    assert got == reference_top(scores, k)
    assert np.array_equal(vals.numpy(), np.take_along_axis(scores, idx.numpy(), 1))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), k_small=st.integers(1, 30), extra=st.integers(1, 60))
def test_a_shorter_cut_is_a_prefix_of_a_longer_one(seed, k_small, extra):
    s = torch.from_numpy(tied_scores(np.random.default_rng(seed), 5, 400, levels=4))
    _, short = ranked_topk(s, k_small)
    _, long = ranked_topk(s, k_small + extra)
    assert torch.equal(long[:, :k_small], short)


def pop_like(n_users: int, n_items: int, seed: int = 0):
    """A popularity-like scorer (every user the same few tied levels) with known items
    and a test truth."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 5, size=n_items).astype(np.float32)
    known = sp.random(n_users, n_items, density=0.05, format="csr", random_state=seed, dtype=np.float32)
    known.data[:] = 1
    truth = sp.random(n_users, n_items, density=0.03, format="csr", random_state=seed + 1, dtype=np.float32)
    truth = (truth - truth.multiply(known > 0)).tocsr()
    truth.eliminate_zeros()
    truth.data[:] = 1

    def score(rows: np.ndarray) -> np.ndarray:
        return np.tile(counts, (len(rows), 1))

    return score, truth, known


def test_metrics_at_k_do_not_depend_on_the_other_cut_offs():
    score, truth, known = pop_like(300, 2000)
    alone = evaluate_ranking(score, truth, known, EvalConfig(ks=(10,), metrics=("ndcg", "recall")))
    many = evaluate_ranking(score, truth, known, EvalConfig(ks=(5, 10, 20, 50), metrics=("ndcg", "recall")))
    for name in ("ndcg@10", "recall@10", "coverage@10"):
        assert alone.metrics[name] == many.metrics[name]
    assert np.array_equal(alone.top_items, many.top_items[:, :10])


@pytest.mark.parametrize("chunk", [1, 7, 128])
def test_metrics_do_not_depend_on_the_chunk_size(chunk):
    score, truth, known = pop_like(300, 2000, seed=3)
    config = dict(ks=(5, 10, 50), metrics=("ndcg", "map"))
    base = evaluate_ranking(score, truth, known, EvalConfig(**config, chunk_size=1024))
    other = evaluate_ranking(score, truth, known, EvalConfig(**config, chunk_size=chunk))
    assert other.metrics == base.metrics
    assert np.array_equal(other.top_items, base.top_items)


def test_recommend_with_a_smaller_k_is_a_prefix(tmp_path):
    import pandas as pd

    import fusionrank as fr

    rng = np.random.default_rng(0)
    events = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in rng.integers(0, 40, 600)],
            "item_id": [f"i{i:03d}" for i in rng.integers(0, 300, 600)],
        }
    ).drop_duplicates()
    split = fr.split(fr.Dataset.from_files(events, cache_dir=tmp_path), "ratio", seed=1)
    model = fr.build_model("pop").fit(split)  # counts: many ties
    users = list(split.users.ids[:25])
    short = model.recommend(users, k=7)
    long = model.recommend(users, k=60)
    for user in users:
        a = short[short.user_id == user].item_id.tolist()
        b = long[long.user_id == user].item_id.tolist()
        assert a == b[: len(a)] and len(a) == 7


def test_top_k_and_source_ranks_follow_the_same_rule():
    s = tied_scores(np.random.default_rng(5), 6, 300, levels=3)
    idx, _ = top_k(lambda r: s[r], np.arange(6), 40)
    view = SourceChunk.from_scores(torch.from_numpy(s.copy()), 40)
    for r in range(6):
        want = reference_top(s[r : r + 1], 40)[0]
        assert [i for i in idx[r] if i >= 0] == want
        ranks = top_n_ranks(view.items, np.full(len(want), r), np.array(want), 300)
        assert ranks.tolist() == list(range(1, len(want) + 1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_and_cuda_give_the_same_lists():
    s = torch.from_numpy(tied_scores(np.random.default_rng(9), 64, 5000, levels=5))
    for k in (1, 10, 50, 300):
        cpu_v, cpu_i = ranked_topk(s, k)
        gpu_v, gpu_i = ranked_topk(s.cuda(), k)
        assert torch.equal(cpu_i, gpu_i.cpu()) and torch.equal(cpu_v, gpu_v.cpu())
