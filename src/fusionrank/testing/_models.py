"""The model conformance kit: :class:`RecommenderTests`, the checks every model keeps.

The model under test is fitted once per test class on a planted split (fixtures of the
class itself, so a user's module needs nothing but the import and a subclass); only the
checks that need another fit (the same seed again, a refit on other data) fit again.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

import fusionrank as fr
from fusionrank.data.splits import Split
from fusionrank.recommender import Recommender
from fusionrank.registry import model_class, registered_classes
from fusionrank.settings import build_settings
from fusionrank.testing._data import planted_dataset

SOME_USERS = ["u3", "u7"]
"""Users of the planted dataset whose recommendations are checked (in this order)."""
K = 5


@dataclass(frozen=True)
class ModelSpec:
    """One model under test: how to build it and what the kit may expect of it."""

    model: str | type[Recommender]
    """A registered name, a dotted class path, or the class itself."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Settings by keyword, as ``fr.build_model`` takes them; small ones keep the kit fast.
    A ``progress`` setting the model has is switched off unless given here."""
    cold_users: bool = False
    """The model serves users unknown to training from their side features."""
    ignores_data: bool = False
    """The model's scores do not depend on the data (a seeded reference): no refit check."""

    @property
    def name(self) -> str:
        """The name the model is built under: the registered name or the dotted path."""
        if isinstance(self.model, str):
            return self.model
        return f"{self.model.__module__}.{self.model.__qualname__}"

    def build(self) -> Recommender:
        """A new, unfitted model."""
        if isinstance(self.model, str):
            cls = model_class(self.model)
        elif isinstance(self.model, type) and issubclass(self.model, Recommender):
            cls = self.model
        else:
            raise TypeError(
                f"model must be a name, a dotted class path or a Recommender class, got {self.model!r}"
            )
        settings = dict(self.settings)
        if "progress" in {f.name for f in dataclasses.fields(cls.config_class)}:
            settings.setdefault("progress", False)
        if isinstance(self.model, str):
            return fr.build_model(self.model, **settings)
        model = cls(build_settings(cls.config_class, settings, owner=self.name))
        model.name = self.name
        return model


def _load_saved(model: Recommender, folder: Path) -> Recommender:
    """Load a saved ``model`` as a user would: by the saved class path when fusionrank imports
    it by itself (its own or a registered class), else passing the class."""
    cls = type(model)
    path = f"{cls.__module__}.{cls.__qualname__}"
    if path.startswith("fusionrank.") or path in registered_classes():
        return fr.load_model(folder)
    return fr.load_model(folder, cls)


class RecommenderTests:
    """Conformance tests of one model: subclass it in a test module (the subclass's name starts
    with ``Test``) and set :attr:`model`, with :attr:`settings` that fit fast.

    What is checked: the config round-trips through the settings validator; ``fit(split)``
    gives float32 scores of shape (users, items), a finite score for every user, and batch
    scores equal to single-user scores; save/load keeps the scores, the name and the config;
    ``recommend`` returns external ids, ranks 1..k in the order asked, decreasing scores and
    no seen items; an unknown user gets a clear error naming the model, or the cold-start
    path (:attr:`cold_users`); the same seed gives the same scores; a refit on other data
    really refits (unless :attr:`ignores_data`); ``fr.evaluate`` gives an nDCG in [0, 1].

    The data is :func:`~fusionrank.testing.planted_dataset` (48 users, 32 items). To test
    several models with one class, override the class-scoped fixture :meth:`model_spec`
    (e.g. parametrized by name).
    """

    model: ClassVar[str | type[Recommender] | None] = None
    """The model under test: a registered name, a dotted class path, or the class."""
    settings: ClassVar[Mapping[str, Any]] = {}
    """Its settings by keyword (keep them small: the kit fits the model four times)."""
    cold_users: ClassVar[bool] = False
    """True when the model serves unknown users from side features (``age``, ``job`` here)."""
    ignores_data: ClassVar[bool] = False
    """True when the model's scores do not depend on the data (the refit check is skipped)."""

    # --- fixtures, one fit per class ---------------------------------------------------------
    @pytest.fixture(scope="class")
    def model_spec(self) -> ModelSpec:
        """The model under test, from the class attributes."""
        if self.model is None:
            raise TypeError(f"{type(self).__name__}: set model = a registered name, dotted path or class")
        return ModelSpec(
            self.model, self.settings, cold_users=self.cold_users, ignores_data=self.ignores_data
        )

    @pytest.fixture(scope="class")
    def planted_splits(self, tmp_path_factory: pytest.TempPathFactory) -> tuple[Split, Split]:
        """Two "ratio" splits of planted datasets of the same shape: the one the model is
        fitted on, and another one (other events) for the refit check."""
        folder = tmp_path_factory.mktemp("planted")
        first = planted_dataset(folder / "a", seed=0)
        other = planted_dataset(folder / "b", seed=1)
        return fr.split(first, "ratio", seed=1), fr.split(other, "ratio", seed=1)

    @pytest.fixture(scope="class")
    def split(self, planted_splits: tuple[Split, Split]) -> Split:
        """The split the model is fitted on."""
        return planted_splits[0]

    @pytest.fixture(scope="class")
    def fitted_model(self, model_spec: ModelSpec, split: Split) -> Recommender:
        """The model fitted once on :meth:`split`, shared by the checks (none refits it)."""
        return model_spec.build().fit(split)

    @pytest.fixture(scope="class")
    def scores(self, fitted_model: Recommender, split: Split) -> np.ndarray:
        """The fitted model's scores of every user of the split."""
        return np.asarray(fitted_model.score(np.arange(split.n_users)))

    # --- the checks ----------------------------------------------------------------------------
    def test_config_round_trips_through_the_settings(self, model_spec: ModelSpec) -> None:
        model = model_spec.build()
        config = build_settings(type(model).config_class, dataclasses.asdict(model.config), owner=model.name)
        assert config == model.config

    def test_scores_are_float32_users_by_items(self, split: Split, scores: np.ndarray) -> None:
        assert scores.shape == (split.n_users, split.n_items)
        assert scores.dtype == np.float32
        assert np.isfinite(scores).any(axis=1).all(), "every user gets some scored items"

    def test_batch_scores_equal_single_user_scores(
        self, fitted_model: Recommender, scores: np.ndarray
    ) -> None:
        single = fitted_model.score(np.arange(5, 6))
        np.testing.assert_allclose(single, scores[5:6], rtol=1e-5, atol=1e-6)

    def test_save_load_keeps_scores_name_and_config(
        self,
        model_spec: ModelSpec,
        fitted_model: Recommender,
        split: Split,
        scores: np.ndarray,
        tmp_path: Path,
    ) -> None:
        folder = fitted_model.save(tmp_path / "model")
        loaded = _load_saved(fitted_model, folder)
        assert type(loaded) is type(fitted_model)
        assert loaded.name == model_spec.name and loaded.config == fitted_model.config
        np.testing.assert_array_equal(np.asarray(loaded.score(np.arange(split.n_users))), scores)
        pd.testing.assert_frame_equal(
            loaded.recommend(SOME_USERS, k=K), fitted_model.recommend(SOME_USERS, k=K)
        )

    def test_recommend_ranks_unseen_items_in_the_order_asked(
        self, fitted_model: Recommender, split: Split
    ) -> None:
        recs = fitted_model.recommend(SOME_USERS, k=K)
        assert list(recs.columns) == ["user_id", "item_id", "score", "rank"]
        assert list(dict.fromkeys(recs["user_id"])) == SOME_USERS
        ranks = recs.groupby("user_id")["rank"].apply(list).tolist()
        assert ranks == [list(range(1, K + 1))] * len(SOME_USERS)
        user = SOME_USERS[0]
        seen = set(split.train.loc[split.train["user_id"] == user, "item_id"])
        seen |= set(split.valid.loc[split.valid["user_id"] == user, "item_id"])
        assert not seen & set(recs.loc[recs["user_id"] == user, "item_id"])
        assert recs.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing).all()

    def test_unknown_user_gets_an_error_or_the_cold_start_path(
        self, model_spec: ModelSpec, fitted_model: Recommender
    ) -> None:
        if not model_spec.cold_users:
            error = f"{re.escape(model_spec.name)}.*no cold-start path"
            with pytest.raises(fr.UnknownUserError, match=error):
                fitted_model.recommend(["nobody"], k=3)
            return
        with pytest.raises(fr.UnknownUserError, match="side features"):
            fitted_model.recommend(
                ["nobody"], k=3, user_features=pd.DataFrame({"user_id": ["else"], "age": [30], "job": ["b"]})
            )
        cold = fitted_model.recommend(
            ["nobody"], k=3, user_features=pd.DataFrame({"user_id": ["nobody"], "age": [30], "job": ["b"]})
        )
        assert len(cold) == 3 and set(cold["user_id"]) == {"nobody"}

    def test_same_seed_gives_the_same_scores(
        self, model_spec: ModelSpec, split: Split, scores: np.ndarray
    ) -> None:
        again = model_spec.build().fit(split)
        np.testing.assert_array_equal(np.asarray(again.score(np.arange(split.n_users))), scores)

    def test_refit_on_other_data_really_refits(
        self, model_spec: ModelSpec, planted_splits: tuple[Split, Split], scores: np.ndarray
    ) -> None:
        if model_spec.ignores_data:
            pytest.skip(f"{model_spec.name} ignores its data (ignores_data)")
        split, other = planted_splits
        model = model_spec.build().fit(split)
        refit = np.asarray(model.fit(other).score(np.arange(split.n_users)))
        assert not np.array_equal(refit, scores)

    def test_evaluate_gives_metrics_in_range(self, fitted_model: Recommender, split: Split) -> None:
        result = fr.evaluate(fitted_model, split, ks=(K,))
        assert 0 <= result.metrics[f"ndcg@{K}"] <= 1 and len(result.per_user) == result.n_users
