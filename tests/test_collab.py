"""Neural collaborative models on a planted block structure: they recover it, their loss
goes down, early stopping restores the best epoch. (The contract: test_model_contract.py.)"""

import dataclasses

import numpy as np
import pandas as pd
import pytest

import fusionrank as fr
from fusionrank.collab.negatives import NegativeSampler
from fusionrank.collab.trainer import TrainConfig
from fusionrank.data.dataset import Dataset
from fusionrank.data.splits import SplitConfig, make_split

N_USERS, N_ITEMS, BLOCKS = 80, 48, 4
FAST = {
    "bpr": dict(epochs=40, learning_rate=0.02, batch_size=256),
    "lightgcn": dict(epochs=40, learning_rate=0.02, batch_size=256),
    "neumf": dict(epochs=30, learning_rate=0.02, batch_size=256),
    "sasrec": dict(epochs=40, learning_rate=0.005, batch_size=32),
}
SMALL = {
    "bpr": {"embedding_dim": 16},
    "lightgcn": {"embedding_dim": 16},
    "neumf": {"mf_dim": 8, "mlp_dim": 8, "hidden": (16, 8)},
    "sasrec": {"hidden": 16, "inner": 32, "max_len": 20},
}


def planted(seed: int = 0) -> Dataset:
    """Users of block b interact with ~70% of block b's items, in a cyclic order over time."""
    rng = np.random.default_rng(seed)
    rows, t = [], 0
    per = N_ITEMS // BLOCKS
    for u in range(N_USERS):
        b = u % BLOCKS
        items = [b * per + k for k in range(per) if rng.random() < 0.7]
        start = int(rng.integers(len(items)))
        for i in items[start:] + items[:start]:
            t += 1
            rows.append((f"u{u}", f"i{i}", 1.0, float(t)))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return Dataset(name="planted", interactions=frame)


def _model(name, **train):
    return fr.build_model(name, **SMALL[name], **{**FAST[name], "progress": False, "patience": 0, **train})


@pytest.fixture(scope="module")
def split():
    return make_split(planted(), SplitConfig(kind="ratio", seed=1))


@pytest.fixture(scope="module")
def seq_split():
    return make_split(planted(), SplitConfig(kind="leave-last", seed=1))


@pytest.mark.parametrize("name", ["bpr", "neumf", "lightgcn", "sasrec"])
def test_recovers_planted_blocks_and_loss_decreases(name, split, seq_split):
    data = seq_split if name == "sasrec" else split
    model = _model(name).fit(data)
    res = fr.evaluate(model, data, ks=(10,))
    losses = model.history["losses"]
    assert losses[-1] < 0.7 * losses[0], losses
    # random ranking of the ~10 unseen items among 48 gives NDCG@10 around 0.2
    assert res.metrics["ndcg@10"] > 0.45, res.metrics
    users = np.arange(data.n_users)
    best = data.items.to_ids(model.score(users).argmax(axis=1))
    item_block = np.array([int(i[1:]) // (N_ITEMS // BLOCKS) for i in best])
    user_block = np.array([int(u[1:]) % BLOCKS for u in data.users.to_ids(users)])
    # each user's best-scored item comes from their own block
    assert np.mean(item_block == user_block) >= 0.9


def test_sasrec_reads_valid_items_as_history_at_the_test_stage(seq_split):
    model = _model("sasrec", epochs=2).fit(seq_split)
    users = np.arange(seq_split.n_users)
    test_stage = model.score(users)
    model.at_stage("valid")
    assert not np.allclose(model.score(users), test_stage)
    model.at_stage("test")
    np.testing.assert_array_equal(model.score(users), test_stage)


def test_early_stopping_restores_the_best_epoch(split):
    model = _model("bpr", epochs=60, patience=3, learning_rate=0.05).fit(split)
    h = model.history
    assert h["epochs"] < 60 and h["epochs"] - h["best_epoch"] == 3
    from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking

    now = evaluate_ranking(model.score, split.matrix("valid"), split.matrix("train"), EvalConfig(ks=(10,)))
    assert now.metrics["ndcg@10"] == pytest.approx(h["best_valid"])
    fixed = _model("bpr", epochs=4, validation=False).fit(split)
    assert fixed.history["epochs"] == fixed.history["best_epoch"] == 4 and not fixed.history["valid"]


def test_negative_sampler_never_returns_a_positive():
    rng = np.random.default_rng(0)
    import scipy.sparse as sp

    train = sp.csr_matrix((rng.random((30, 20)) < 0.6).astype(np.float32))
    for kind in ("uniform", "popularity"):
        s = NegativeSampler(train, kind)
        users = np.repeat(np.arange(30), 50)
        negs = s.sample(users, rng, 3)
        assert negs.shape == (1500, 3)
        assert not np.asarray(train[np.repeat(users, 3), negs.ravel()]).any()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="no|unknown setting"):
        fr.build_model("bpr", layers=3)
    with pytest.raises(ValueError, match="unknown model"):
        fr.build_model("gru4rec")
    with pytest.raises(ValueError):
        dataclasses.replace(TrainConfig(), epochs=0)


def test_lightgcn_loss_chunks_leave_training_unchanged(split):
    """A batch scored in loss chunks trains to the same vectors and losses as one piece."""
    whole = _model("lightgcn", epochs=3).fit(split)
    chunked = _model("lightgcn", epochs=3, loss_chunk=37).fit(split)
    np.testing.assert_allclose(chunked.history["losses"], whole.history["losses"], rtol=1e-5)
    np.testing.assert_allclose(chunked.item_embeddings(), whole.item_embeddings(), atol=1e-5)
    assert not np.allclose(
        _model("lightgcn", epochs=3, learning_rate=0.03).fit(split).item_embeddings(), whole.item_embeddings()
    )
