"""Cold-start and cross-domain models on data with planted structure."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from helpers import dataset_with_content, split_of

import fusionrank as fr
from fusionrank.data.dataset import Dataset
from fusionrank.data.fetch import ML100K_PROFILE
from fusionrank.data.vectors import read_vectors
from fusionrank.encoders.kg import TransEConfig, embed_kg
from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking
from fusionrank.fusion.content import load_content

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
    errors = pd.read_parquet(tmp_path / "out" / "errors.parquet")
    assert errors["item_id"].tolist() == ["zz"] and errors["reason"].tolist() == ["no knowledge-graph entity"]


def _cold_setup(folder, seed=1, text_tells=True):
    """40 cold items of the planted matrix; genres are the planted blocks; the text is the
    block plus noise (``text_tells``) or noise alone."""
    x, taste, block = planted_matrix()
    rng = np.random.default_rng(seed)
    cold = rng.choice(x.shape[1], 40, replace=False)
    train = x.tolil()
    train[:, cold] = 0
    train = sp.csr_matrix(train)
    train.eliminate_zeros()
    test_full = sp.lil_matrix(x.shape)
    test_full[:, cold] = x[:, cold]
    noise = rng.normal(size=(x.shape[1], K)).astype(np.float32)
    content = np.eye(K, dtype=np.float32)[block] + 0.3 * noise if text_tells else noise
    genres = [[f"g{b}"] for b in block]
    data = dataset_with_content(folder, x.shape[0], content, genres)
    mask = np.zeros(x.shape[1], bool)
    mask[cold] = True
    return split_of(train, dataset=data), sp.csr_matrix(test_full), mask


def _ndcg_cold(model, test, mask):
    return evaluate_ranking(model.score, test, None, EvalConfig(ks=(10,)), item_mask=mask).metrics["ndcg@10"]


def test_cold_item_models_use_content(tmp_path):
    split, test, mask = _cold_setup(tmp_path)

    def ndcg(name, **settings):
        return _ndcg_cold(fr.build_model(name, **settings).fit(split), test, mask)

    random = ndcg("random")
    scores = {
        "genre-pop": ndcg("genre-pop"),
        "content-knn": ndcg("content-knn"),
        "ease-content": ndcg("ease-content"),
        "kernel-content": ndcg("kernel-content"),
        "hybrid": ndcg("hybrid", epochs=10, batch_size=128, hidden=16, reg=10, progress=False),
        "two-tower": ndcg(
            "two-tower", epochs=40, batch_size=128, dim=16, hidden=32, patience=40, progress=False
        ),
    }
    assert random < 0.35, random
    for name in ("content-knn", "ease-content", "kernel-content", "hybrid", "two-tower"):
        # the planted taste is recoverable from content alone; genre popularity is not personal
        assert scores[name] > max(random, scores["genre-pop"]) + 0.25, (random, scores)
    tower = fr.build_model("two-tower", epochs=3, batch_size=256, dim=16, hidden=32, progress=False).fit(
        split
    )
    assert tower.item_vectors().shape == (split.n_items, 16)
    # new items known only by content are scored like the cold items they resemble
    cold = np.flatnonzero(mask)[:5]
    vectors = load_content(split, ("text",)).vectors[cold]
    for name in ("ease-content", "kernel-content"):
        model = fr.build_model(name).fit(split)
        np.testing.assert_allclose(
            model.score_content(np.arange(4), vectors), model.score(np.arange(4))[:, cold], rtol=1e-4
        )
    kernel = fr.build_model("kernel-content", kernels=(0.5, 4.0, 32.0)).fit(split)
    # the sharpness is chosen on pseudo-cold warm items: every value tried is reported
    assert [s for s, _ in kernel.history["valid"]] == [0.5, 4.0, 32.0]
    assert kernel.history["kernel"] == max(kernel.history["valid"], key=lambda t: t[1])[0]


def test_genres_are_a_content_modality_read_from_the_catalogue(tmp_path):
    split, test, mask = _cold_setup(tmp_path, seed=2, text_tells=False)  # text that says nothing
    _, _, block = planted_matrix()
    rows, has = split.content("genres")
    np.testing.assert_array_equal(rows, np.eye(K, dtype=np.float32)[block])
    assert has.all()
    fused = load_content(split, ("text", "genres")).vectors
    assert fused.shape == (split.n_items, 2 * K)
    np.testing.assert_allclose(fused[:, K:], rows / np.sqrt(2), rtol=1e-6)  # each block weighs the same
    assert fr.embed_content(split.dataset, ["genres"]) == {}  # nothing to embed: no vectors folder
    cold = np.flatnonzero(mask)
    text = _ndcg_cold(fr.build_model("kernel-content").fit(split), test, mask)
    both = fr.build_model("kernel-content", modalities=("text", "genres")).fit(split)
    # the planted taste follows the genres: read beside noise, they rank the cold items
    assert _ndcg_cold(both, test, mask) > text + 0.2, (text, _ndcg_cold(both, test, mask))
    np.testing.assert_allclose(
        both.score_content(np.arange(4), fused[cold[:3]]), both.score(np.arange(4))[:, cold[:3]], rtol=1e-4
    )


def test_cold_users_are_served_from_side_features(tmp_path):
    x, taste, _ = planted_matrix(seed=3)
    cold = np.arange(0, x.shape[0], 10)
    train = x.tolil()
    train[cold] = 0
    train = sp.csr_matrix(train)
    train.eliminate_zeros()
    test = sp.csr_matrix(x.toarray() * np.isin(np.arange(x.shape[0]), cold)[:, None])
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(x.shape[0])], "taste": taste})
    data = dataset_with_content(
        tmp_path,
        x.shape[0],
        np.ones((x.shape[1], 2), np.float32),
        users=users,
        profile={"user_features": ["taste"]},
    )
    split = split_of(train, test=test, dataset=data)
    features, names = split.user_features()
    np.testing.assert_array_equal(features, np.eye(K, dtype=np.float32)[taste])

    def ndcg(model):
        return evaluate_ranking(model.score, test, train, EvalConfig(ks=(10,))).metrics["ndcg@10"]

    pop = ndcg(fr.build_model("pop").fit(split))
    demo = ndcg(fr.build_model("demographic-pop").fit(split))
    fitted = fr.build_model("profile", epochs=10, progress=False).fit(split)
    profile = ndcg(fitted)
    # a user without history is served from side features alone
    np.testing.assert_allclose(fitted.score(cold[:3]), fitted.score_features(features[cold[:3]]), rtol=1e-5)
    assert demo > pop + 0.2 and profile > pop + 0.2, (pop, demo, profile)
    # an unknown user with the same side features gets the same list as a cold user of that taste
    new = fitted.recommend(
        ["new"], k=5, user_features=pd.DataFrame({"user_id": ["new"], "taste": [taste[cold[0]]]})
    )
    known = fitted.recommend([f"u{cold[0]}"], k=5)
    assert new["item_id"].tolist() == known["item_id"].tolist()
    # a catalogue above softmax_items trains on a sampled softmax: still far above popularity,
    # and the same seed gives the same tower
    sampled = fr.build_model("profile", epochs=10, progress=False, softmax_items=x.shape[1] // 4).fit(split)
    assert sampled._sampled and not fitted._sampled
    assert ndcg(sampled) > pop + 0.2, (pop, ndcg(sampled))
    again = fr.build_model("profile", epochs=10, progress=False, softmax_items=x.shape[1] // 4).fit(split)
    np.testing.assert_array_equal(again.score(cold), sampled.score(cold))


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
        "xd",
        pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]),
        items=items,
        profile=fr.DatasetProfile(
            genres="class", domains=ML100K_PROFILE.domains, source_domain="A", target_domain="B"
        ),
    )
    split = fr.split(data, "cross-domain", seed=1)
    domain = split.item_domains()
    assert set(domain) == {"A", "B"} and len(split.meta["test_users"]) > 10
    test_users = split.users.to_index(split.meta["test_users"])
    assert not set(test_users) & set(split.train[domain[split.train.item_idx] == "B"].user_idx)
    assert (split.candidate_items() == (domain == "B")).all()

    def ndcg(name, **settings):
        return fr.evaluate(fr.build_model(name, **settings).fit(split), split, ks=(10,)).metrics["ndcg@10"]

    pop = ndcg("pop")
    emcdr = ndcg("emcdr", progress=False)
    xd = ndcg("cross-domain", epochs=20, batch_size=32, progress=False)
    assert xd > pop + 0.2 and emcdr > pop, (pop, emcdr, xd)


def test_content_models_need_their_inputs(tmp_path):
    split, _, _ = _cold_setup(tmp_path)
    with pytest.raises(ValueError, match="genres"):
        fr.build_model("genre-pop").fit(split_of(split.matrix("train")))
    with pytest.raises(ValueError, match="side features"):
        fr.build_model("profile").fit(split)
    with pytest.raises(ValueError, match="no image column"):
        fr.build_model("content-knn", modalities=["image"]).fit(split)


def test_a_hybrid_that_kept_its_start_is_refitted_without_training(tmp_path):
    """The refit before test (and each stacked fold) trains as many epochs as valid chose:
    none for a hybrid whose validation kept its ridge-map start (one epoch had moved it off
    EASE's level on the temporal split), one at least for a model that starts random."""
    from fusionrank.pipelines.stages.models import best_epochs
    from fusionrank.settings import SettingsError

    split, test, mask = _cold_setup(tmp_path)
    kept = fr.build_model("hybrid", epochs=10, batch_size=128, hidden=16, reg=10, progress=False)
    kept.fit(split)
    kept.history = {**kept.history, "best_epoch": 0}
    assert best_epochs(kept) == 0
    refit = fr.build_model(
        "hybrid", epochs=0, validation=False, blend="fixed", batch_size=128, hidden=16, reg=10, progress=False
    ).fit(split)
    start = fr.build_model("ease-content", reg=10, ridge=10.0).fit(split)  # the tower's start
    users = np.arange(5)
    np.testing.assert_allclose(refit.score(users)[:, mask], start.score(users)[:, mask], rtol=1e-3, atol=1e-5)
    bpr = fr.build_model("bpr", epochs=2, progress=False).fit(split)
    bpr.history = {**bpr.history, "best_epoch": 0}
    assert best_epochs(bpr) == 1
    with pytest.raises(SettingsError, match="epochs must be >= 1"):
        fr.build_model("bpr", epochs=0)


def test_the_hybrid_chooses_its_blend_on_valid_and_a_refit_reuses_it(tmp_path):
    """``blend: valid``: a warm item's column is its EASE column plus a weight of its content
    column, a cold item's a factor of its content column (both scaled to EASE's norm: a
    fine-tuned tower's content columns can be on any scale, and the fixed blend let them
    swamp EASE), the weight chosen on the split's valid interactions, the factor on a mixed
    ranking of warm and pseudo-cold items; a refit on train + valid, which has no valid part
    left, is given the chosen pair as it is given the epochs."""
    from fusionrank.pipelines.config import ModelSpec
    from fusionrank.pipelines.stages.models import refit_settings

    x, _, block = planted_matrix()
    held = np.random.default_rng(3).random(x.shape) < 0.2
    train, valid = sp.csr_matrix(x.multiply(~held)), sp.csr_matrix(x.multiply(held))
    train = train.tolil()
    train[:, :3] = 0  # three items without a training interaction: scored from content
    train = sp.csr_matrix(train)
    train.eliminate_zeros()
    valid.eliminate_zeros()
    noise = np.random.default_rng(4).normal(size=(x.shape[1], K)).astype(np.float32)
    content = np.eye(K, dtype=np.float32)[block] + 0.3 * noise
    split = split_of(train, valid, dataset=dataset_with_content(tmp_path, x.shape[0], content))
    small = {"batch_size": 64, "hidden": 16, "reg": 10, "progress": False}
    users = np.arange(x.shape[0])
    warm = np.flatnonzero(np.asarray(train.sum(axis=0)).ravel() > 0)
    cold = np.arange(3)

    ease_only = fr.build_model(
        "hybrid", epochs=2, blend="valid", warm_blend=[0.0], cold_scales=[0.0], **small
    )
    ease_only.fit(split)
    ease = fr.build_model("ease", reg=10).fit(split)
    np.testing.assert_allclose(
        ease_only.score(users)[:, warm], ease.score(users)[:, warm], rtol=1e-4, atol=1e-5
    )
    assert (ease_only.score(users)[:, cold] == 0).all()
    assert ease_only.history["chosen"] == {"warm_blend": [0.0], "cold_scales": [0.0]}  # one pair: no choice

    chose = fr.build_model("hybrid", epochs=3, **small).fit(split)  # blend: valid, the default
    warm_tried, cold_tried = chose.history["blend"], chose.history["cold"]
    assert [w for w, _ in warm_tried] == [0.0, 0.125, 0.25, 0.5, 1.0, 2.0]
    assert [f for f, _ in cold_tried] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 0.3, 0.1, 0.0]
    w, f = max(warm_tried, key=lambda t: t[1])[0], max(cold_tried, key=lambda t: t[1])[0]
    # the planted blocks make content informative: the mixed ranking lets cold items in
    assert f > 0 and max(n for _, n in cold_tried) > dict(cold_tried)[0.0]
    on_valid = fr.build_model("hybrid", epochs=3, cold_choice="valid", **small).fit(split)
    assert on_valid.history["blend"] == warm_tried  # the warm weight is chosen the same way
    assert [f for f, _ in on_valid.history["cold"]] == [f for f, _ in cold_tried]
    assert on_valid.history["cold"] != cold_tried  # another ranking: the split's valid
    assert on_valid.history["chosen"]["cold_scales"] == [max(on_valid.history["cold"], key=lambda t: t[1])[0]]
    assert refit_settings(chose) == {
        "epochs": chose.history["best_epoch"],
        "warm_blend": [w],
        "cold_scales": [f],
    }
    vectors = load_content(split, ("text",)).vectors[cold]  # new items scored as the cold ones
    np.testing.assert_allclose(
        chose.score_content(users, vectors), chose.score(users)[:, cold], rtol=1e-4, atol=1e-6
    )
    fixed = fr.build_model("hybrid", epochs=1, blend="fixed", **small).fit(split)
    assert fixed.history.get("chosen") is None

    spec = ModelSpec("hybrid", {"epochs": 3, "blend": "valid", **small})
    refit = spec.build("hybrid", 7, False, refit_settings(chose))
    assert (refit.config.warm_blend, refit.config.cold_scales) == ((w,), (f,))
    assert (refit.config.epochs, refit.config.validation) == (chose.history["best_epoch"], False)
    bpr = ModelSpec("bpr", {"epochs": 3}).build("bpr", 7, False, {"epochs": 2, "warm_blend": [1.0]})
    assert (bpr.config.epochs, bpr.config.validation) == (2, False)  # not its setting: left out
    with pytest.raises(ValueError, match="warm_blend"):
        fr.build_model("hybrid", warm_blend=[-1.0])
