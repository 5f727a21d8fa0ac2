"""The shipped conformance kit (``fusionrank.testing``) on models from outside fusionrank:
a user's own models pass it, whether named by dotted path or given as the class, and a
model with a defect fails the check that covers the defect."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import fusionrank as fr
from fusionrank.columns import TRAIN
from fusionrank.data.splits import Split
from fusionrank.recommender import Recommender
from fusionrank.testing import ModelSpec, RecommenderTests, planted_dataset


@dataclass(frozen=True)
class CoOccurrenceConfig:
    shrink: float = 1.0
    """Added to the divisor of every score (a setting, so the config has something to round-trip)."""


class CoOccurrence(Recommender):
    """A correct own model: an item's score is how often it co-occurs with the user's items."""

    config_class = CoOccurrenceConfig

    def _fit(self, split: Split) -> None:
        train = sp.csr_matrix(split.matrix(TRAIN), dtype=np.float32)
        table = (train @ (train.T @ train)).toarray() / (1.0 + self.config.shrink)
        self.table = np.asarray(table, dtype=np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.table[self._check_users(users)]

    def state(self) -> dict[str, np.ndarray]:
        return {"table": self.table}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.table = arrays["table"]


class FirstRowForAll(CoOccurrence):
    """Defect: scores the first user of the batch for every user in it."""

    def score(self, users: np.ndarray) -> np.ndarray:
        users = self._check_users(users)
        return np.repeat(self.table[users[:1]], len(users), axis=0)


class ForgetsOnLoad(CoOccurrence):
    """Defect: a loaded model has lost its learnt table."""

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.table = np.zeros_like(arrays["table"])


class TestAUserModelByDottedPath(RecommenderTests):
    model = "tests_plugin.MostRecent"
    settings = {"boost": 2.0}


class TestAUserModelByClass(RecommenderTests):
    model = CoOccurrence
    settings = {"shrink": 0.5}


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Split:
    return fr.split(planted_dataset(tmp_path_factory.mktemp("planted"), seed=0), "ratio", seed=1)


def fitted(model: type[Recommender], split: Split) -> tuple[Recommender, np.ndarray]:
    """A model fitted as the kit fits it, and its scores of every user."""
    fit = ModelSpec(model).build().fit(split)
    return fit, np.asarray(fit.score(np.arange(split.n_users)))


def test_the_kit_fails_a_model_whose_scores_ignore_the_batch(split: Split) -> None:
    kit = RecommenderTests()
    kit.test_batch_scores_equal_single_user_scores(*fitted(CoOccurrence, split))  # the correct model passes
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        kit.test_batch_scores_equal_single_user_scores(*fitted(FirstRowForAll, split))


def test_the_kit_fails_a_model_that_loses_its_state_on_load(split: Split, tmp_path: Path) -> None:
    kit = RecommenderTests()
    model, scores = fitted(CoOccurrence, split)
    kit.test_save_load_keeps_scores_name_and_config(
        ModelSpec(CoOccurrence), model, split, scores, tmp_path / "a"
    )
    model, scores = fitted(ForgetsOnLoad, split)
    with pytest.raises(AssertionError, match="not equal"):
        kit.test_save_load_keeps_scores_name_and_config(
            ModelSpec(ForgetsOnLoad), model, split, scores, tmp_path / "b"
        )


def test_importing_fusionrank_does_not_import_pytest_or_the_kit() -> None:
    """The library runs without pytest: only ``fusionrank.testing`` imports it."""
    code = "import sys, fusionrank; print('pytest' in sys.modules, 'fusionrank.testing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
