"""Scale guards: models quadratic in items say so before they allocate; validation samples users."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import fusionrank as fr
from fusionrank.collab.ease import check_ease_memory, ease_memory
from fusionrank.errors import InvalidArgumentError
from fusionrank.pipelines.cli import app
from fusionrank.resources import InsufficientMemoryError


def test_ease_over_its_item_limit_refuses_before_fitting(tiny_root):
    split = fr.split(fr.load_dataset("tiny", tiny_root), "ratio")
    with pytest.raises(
        InsufficientMemoryError, match=r"EASE on 40 items .*51\.2 kB .*\(max_items=10\).*itemknn"
    ):
        fr.build_model("ease", max_items=10).fit(split)
    assert fr.build_model("ease", max_items=40).fit(split).score([0]).shape == (1, 40)


def test_ease_without_a_limit_compares_with_the_memory_available():
    assert ease_memory(1_000) == 32_000_000
    check_ease_memory(1_000)  # 32 MB: fine anywhere
    with pytest.raises(InsufficientMemoryError, match=r"10,000,000 items .* 3200000\.0 GB .* GB available"):
        check_ease_memory(10_000_000)


def test_the_cli_reports_the_refusal_in_one_line(tiny_root):
    args = [
        "train",
        "--dataset",
        "tiny",
        "--root",
        str(tiny_root),
        "--model",
        "ease",
        "--set",
        "max_items=10",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: EASE on 40 items")


def test_validation_scores_a_seeded_sample_of_users_when_there_are_many(tiny_root):
    from fusionrank.collab.torch_base import ranking_validator
    from fusionrank.evaluation.ranking import EvalConfig, evaluate_ranking

    split = fr.split(fr.load_dataset("tiny", tiny_root), "ratio")
    model = fr.build_model("pop").fit(split)
    every = ranking_validator(model, split, "ndcg@10")()
    assert ranking_validator(model, split, "ndcg@10", max_users=1000)() == every
    sampled = ranking_validator(model, split, "ndcg@10", max_users=5, seed=1)
    assert sampled() == ranking_validator(model, split, "ndcg@10", max_users=5, seed=1)()
    values = {ranking_validator(model, split, "ndcg@10", max_users=5, seed=s)() for s in range(6)}
    assert len(values) > 1 and every not in values  # different users, not the whole set
    whole = evaluate_ranking(model.score, split.matrix("valid"), split.matrix("train"), EvalConfig(ks=(10,)))
    assert whole.n_users > 5 and whole.metrics["ndcg@10"] == every


def test_ease_on_the_most_popular_items_scores_only_those(tiny_root, tmp_path):
    import numpy as np

    split = fr.split(fr.load_dataset("tiny", tiny_root), "ratio")
    counts = np.asarray(split.matrix("train").sum(axis=0)).ravel()
    model = fr.build_model("ease", top_items=12, max_items=12).fit(split)  # the limit counts kept items
    scores = model.score(np.arange(4))
    scored = np.flatnonzero(np.isfinite(scores[0]))
    assert len(scored) == 12 and counts[scored].min() >= np.delete(counts, scored).max()
    assert np.isneginf(np.delete(scores, scored, axis=1)).all()
    assert model.item_similarity() is None
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(fr.load_model(tmp_path / "m").score(np.arange(4)), scores)
    exact = fr.build_model("ease").fit(split)
    assert fr.build_model("ease", top_items=40).fit(split).score([0]).tolist() == exact.score([0]).tolist()


def test_content_models_over_ease_refuse_a_catalogue_their_ease_cannot_hold(monkeypatch, tmp_path):
    import numpy as np

    import fusionrank.collab.ease as ease_module
    from fusionrank.fusion.content_models import EASEContent, KernelContent
    from tests.helpers import dataset_with_content, split_of

    data = dataset_with_content(tmp_path, 4, np.eye(6, 3, dtype=np.float32))
    split = split_of(np.eye(4, 6), dataset=data)
    monkeypatch.setattr(ease_module, "available_memory_bytes", lambda: 0)  # less than any EASE
    for cls in (EASEContent, KernelContent):
        with pytest.raises(InsufficientMemoryError, match="EASE on"):
            cls().fit(split)


def test_content_models_with_max_items_keep_popular_warm_columns_under_the_guard(monkeypatch, tmp_path):
    import numpy as np

    import fusionrank.collab.ease as ease_module
    from fusionrank.fusion.content_models import EASEContent, KernelContent
    from tests.helpers import dataset_with_content, split_of

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(8, 4)).astype(np.float32)
    data = dataset_with_content(tmp_path, 6, vectors)
    train = (rng.random((6, 8)) < 0.5).astype(float)
    train[:, :3] = 1.0  # items 0-2 the most popular; item 7 cold
    train[:, 7] = 0.0
    split = split_of(train, dataset=data)
    # EASE over 3 items fits what is left; over the 7 warm ones it would not
    monkeypatch.setattr(ease_module, "available_memory_bytes", lambda: ease_module.ease_memory(3) + 1)
    for cls in (EASEContent, KernelContent):
        with pytest.raises(InsufficientMemoryError, match="EASE on 7 items"):
            cls().fit(split)
        model = cls(cls.config_class(max_items=3)).fit(split)
        assert model._warm_idx.tolist() == [0, 1, 2]
        scores = model.score(np.arange(6))
        assert scores.shape == (6, 8) and np.isfinite(scores).all()
        # a warm item outside the kept ones is scored from its content, as a cold item is
        np.testing.assert_allclose(
            scores[:, 5], model.score_content(np.arange(6), model._vectors()[5:6])[:, 0], rtol=1e-5, atol=1e-6
        )
        model.save(tmp_path / cls.__name__)
        loaded = fr.load_model(tmp_path / cls.__name__)
        np.testing.assert_array_equal(loaded.score(np.arange(6)), scores)
        new = model._vectors()[5:7]
        users = np.arange(6)
        np.testing.assert_array_equal(loaded.score_content(users, new), model.score_content(users, new))
    with pytest.raises(InvalidArgumentError, match="max_items must be >= 1"):
        KernelContent(KernelContent.config_class(max_items=0))


def test_content_columns_are_kept_for_a_read_only_array_only(tmp_path):
    import numpy as np

    from fusionrank.fusion.content_models import KernelContent
    from tests.helpers import dataset_with_content, split_of

    rng = np.random.default_rng(1)
    data = dataset_with_content(tmp_path, 6, rng.normal(size=(8, 4)).astype(np.float32))
    model = KernelContent(KernelContent.config_class(kernels=(2.0,))).fit(
        split_of((rng.random((6, 8)) < 0.5).astype(float), dataset=data)
    )
    calls = []
    compute = model._content_columns
    model._content_columns = lambda v: calls.append(len(v)) or compute(v)  # type: ignore[method-assign]
    users = np.arange(6)
    v = model._vectors()[:3].copy()
    first = model.score_content(users, v)
    v[:] = v[::-1].copy()  # a writeable array may change: scored afresh every call
    np.testing.assert_array_equal(model.score_content(users, v), first[:, ::-1])
    assert calls == [3, 3]
    v.flags.writeable = False  # a read-only one cannot: its columns are kept
    kept = model.score_content(users, v)
    np.testing.assert_array_equal(model.score_content(users[:2], v), kept[:2])
    assert calls == [3, 3, 3]
