"""The cold-item content models of ``fusion.cold_content`` (``marec-content``,
``aldi-content``) on data with planted tastes: they rank cold items by content, save and
load, score new items like cold ones, repeat under a seed and refuse bad settings."""

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import dataset_with_content, split_of

import fusionrank as fr
from fusionrank.capabilities import HasItemVectors, ReadsContent, ScoresNewItems
from fusionrank.errors import InvalidArgumentError
from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking
from fusionrank.fusion.content import load_content

K = 4  # planted tastes
FAST = {
    "marec-content": {"kernels": (1.0, 4.0), "alphas": (0.1, 1.0), "tails": (0.2,)},
    "aldi-content": {
        "epochs": 15,
        "patience": 5,
        "dim": 8,
        "hidden": 32,
        "top": 10,
        "batch_size": 32,
        "learning_rate": 1e-2,
        "match_weights": (0.1, 1.0),
        "progress": False,
    },
}
MODELS = sorted(FAST)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """90 users of 4 tastes, 60 items of 4 blocks (content: the block plus noise); 24 items
    are cold (no training interaction), their interactions are the test."""
    rng = np.random.default_rng(0)
    n_users, n_items = 90, 60
    taste, block = np.arange(n_users) % K, np.arange(n_items) % K
    x = ((rng.random((n_users, n_items)) < 0.5) & (taste[:, None] == block[None, :])).astype(np.float32)
    cold = np.sort(rng.choice(n_items, 24, replace=False))
    train = x.copy()
    train[:, cold] = 0
    content = np.eye(K, dtype=np.float32)[block] + 0.3 * rng.normal(size=(n_items, K)).astype(np.float32)
    data = dataset_with_content(tmp_path_factory.mktemp("planted"), n_users, content)
    test = np.zeros_like(x)
    test[:, cold] = x[:, cold]
    return split_of(train, dataset=data), sp.csr_matrix(test), cold, taste, block


@pytest.fixture(scope="module")
def fitted(planted):
    split = planted[0]
    return {name: fr.build_model(name, **FAST[name]).fit(split) for name in MODELS}


@pytest.mark.parametrize("name", MODELS)
def test_cold_items_that_match_a_users_history_rank_first(name, planted, fitted):
    split, test, cold, taste, block = planted
    model = fitted[name]
    mask = np.zeros(split.n_items, bool)
    mask[cold] = True
    ndcg = evaluate_ranking(model.score, test, None, EvalConfig(ks=(10,)), item_mask=mask).metrics["ndcg@10"]
    assert ndcg > 0.6, ndcg  # random: 0.30; a ranking by block with random order inside: about 0.77
    # a user's cold items of their own taste score above the cold items of other tastes
    # (the share of such pairs, per user; random: 0.5)
    scores = model.score(np.arange(split.n_users))[:, cold]
    mine = taste[:, None] == block[cold][None, :]
    above = [(s[m][:, None] > s[~m][None, :]).mean() for s, m in zip(scores, mine)]
    assert np.mean(above) > 0.9, np.mean(above)


@pytest.mark.parametrize("name", MODELS)
def test_new_items_score_as_the_same_items_fitted_cold(name, planted, fitted):
    split, _, cold, _, _ = planted
    model = fitted[name]
    # what `recommend --new-items`, serving and the embed stage ask of a content model
    assert isinstance(model, ScoresNewItems) and isinstance(model, HasItemVectors)
    assert isinstance(model, ReadsContent) and model.content_modalities == ("text",)
    vectors = load_content(split, ("text",)).vectors[cold]
    users = np.arange(10)
    np.testing.assert_allclose(
        model.score_content(users, vectors), model.score(users)[:, cold], rtol=1e-5, atol=1e-6
    )
    with pytest.raises(InvalidArgumentError, match="columns"):
        model.score_content(users, vectors[:, :2])


@pytest.mark.parametrize("name", MODELS)
def test_save_load_keeps_scores_and_choices(name, planted, fitted, tmp_path):
    split, _, cold, _, _ = planted
    model = fitted[name]
    loaded = fr.load_model(model.save(tmp_path / "m"))
    users = np.arange(split.n_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    vectors = load_content(split, ("text",)).vectors[cold]
    np.testing.assert_array_equal(loaded.score_content(users, vectors), model.score_content(users, vectors))
    np.testing.assert_array_equal(loaded.item_vectors(), model.item_vectors())
    assert loaded.history["valid"] == [list(v) if isinstance(v, tuple) else v for v in model.history["valid"]]


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_gives_the_same_bytes(name, planted, fitted, tmp_path):
    split = planted[0]
    again = fr.build_model(name, **FAST[name]).fit(split)
    a = fitted[name].save(tmp_path / "a") / "weights.safetensors"
    b = again.save(tmp_path / "b") / "weights.safetensors"
    assert a.read_bytes() == b.read_bytes()


def test_the_settings_are_chosen_on_pseudo_cold_items(fitted):
    marec = fitted["marec-content"]
    tried = marec.history["valid"]
    assert [(s, a) for s, a, _, _ in tried] == [(1.0, 0.1), (1.0, 1.0), (4.0, 0.1), (4.0, 1.0)]
    best = max(tried, key=lambda r: r[3])
    assert (marec.history["kernel"], marec.history["alpha"], marec.history["tail"]) == best[:3]
    aldi = fitted["aldi-content"]
    assert [w for w, _, _ in aldi.history["valid"]] == [0.1, 1.0]
    chosen = max(aldi.history["valid"], key=lambda r: r[2])
    assert (aldi.history["match_weight"], aldi.history["best_epoch"]) == (chosen[0], max(chosen[1], 1))


def test_marec_chooses_alpha_on_a_mixed_ranking_when_the_split_has_valid_rows(planted):
    split, test, cold, taste, block = planted
    train = split.matrix("train").toarray()
    rng = np.random.default_rng(1)
    valid = (train > 0) & (rng.random(train.shape) < 0.2)  # a valid share of the warm rows
    mixed_split = split_of(np.where(valid, 0, train), valid=valid, dataset=split.dataset)
    settings = {**FAST["marec-content"], "alphas": (0.01, 1.0, 100.0)}
    model = fr.build_model("marec-content", **settings).fit(mixed_split)
    mixed = model.history["mixed"]
    assert [a for a, _ in mixed] == [0.01, 1.0, 100.0]
    assert model.history["alpha"] == max(mixed, key=lambda r: r[1])[0]
    assert all(0.0 <= v <= 1.0 for _, v in mixed) and len({v for _, v in mixed}) > 1  # α matters here
    plain = fr.build_model("marec-content", **settings, calibrate=False).fit(mixed_split)
    assert "mixed" not in plain.history
    assert plain.history["alpha"] == max(plain.history["valid"], key=lambda r: r[3])[1]


def test_kernel_content_scales_cold_columns_to_sit_among_warm_ones(planted, tmp_path):
    split, test, cold, taste, block = planted
    train = split.matrix("train").toarray()
    rng = np.random.default_rng(1)
    valid = (train > 0) & (rng.random(train.shape) < 0.2)
    mixed_split = split_of(np.where(valid, 0, train), valid=valid, dataset=split.dataset)
    scales = (1.0, 4.0, 16.0)
    model = fr.build_model("kernel-content", kernels=(2.0,), cold_scales=scales).fit(mixed_split)
    mixed = model.history["mixed"]
    assert [c for c, _ in mixed] == list(scales)
    scale = model.history["cold_scale"]
    assert scale == max(mixed, key=lambda r: r[1])[0] and scale > 1  # shrunk predictions scaled up
    plain = fr.build_model("kernel-content", kernels=(2.0,), cold_scales=(1.0,)).fit(mixed_split)
    assert "mixed" not in (plain.history or {})
    users = np.arange(10)
    np.testing.assert_allclose(model.score(users)[:, cold], scale * plain.score(users)[:, cold], rtol=1e-5)
    warm = np.setdiff1d(np.arange(train.shape[1]), cold)
    np.testing.assert_array_equal(model.score(users)[:, warm], plain.score(users)[:, warm])
    vectors = load_content(mixed_split, ("text",)).vectors[cold[:3]]
    again = fr.load_model(model.save(tmp_path / "k"))
    np.testing.assert_allclose(
        again.score_content(users, vectors), scale * plain.score_content(users, vectors), rtol=1e-5
    )


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("marec-content", {"alphas": ()}, "alphas must be a non-empty tuple"),
        ("marec-content", {"kernels": (0.0,)}, "kernels must be"),
        ("marec-content", {"tails": (1.5,)}, r"tails must be shares in \(0, 1\)"),
        ("marec-content", {"reg": 0.0}, "reg and ridge must be > 0"),
        ("aldi-content", {"match_weights": (-1.0,)}, "match_weights must be"),
        ("aldi-content", {"dim": 0}, "dim, hidden, pairs and top must be >= 1"),
        ("aldi-content", {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ("aldi-content", {"users": "both"}, "expected one of"),
    ],
)
def test_bad_settings_are_refused(name, settings, message):
    with pytest.raises(ValueError, match=message):
        fr.build_model(name, **settings)


@pytest.mark.parametrize("name", MODELS)
def test_a_catalogue_their_ease_cannot_hold_is_refused(name, monkeypatch, planted):
    import fusionrank.collab.ease as ease_module
    from fusionrank.resources import InsufficientMemoryError

    monkeypatch.setattr(ease_module, "available_memory_bytes", lambda: 0)  # less than any EASE
    with pytest.raises(InsufficientMemoryError, match="EASE on"):
        fr.build_model(name, **FAST[name]).fit(planted[0])
