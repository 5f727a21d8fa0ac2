import pandas as pd

from fusionrank.data.feedback import FeedbackConfig, implicit_feedback, k_core


def _frame():
    return pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b", "c"],
            "item_id": ["x", "y", "x", "x", "y", "z"],
            "rating": [5.0, 2.0, 3.0, 4.0, 5.0, 1.0],
            "timestamp": [10.0, 11.0, 30.0, 12.0, 13.0, 14.0],
        }
    )


def test_every_rating_is_positive_and_duplicates_keep_the_latest():
    out = implicit_feedback(_frame())
    assert len(out) == 5
    ax = out[(out.user_id == "a") & (out.item_id == "x")]
    assert ax["timestamp"].tolist() == [30.0] and ax["rating"].tolist() == [3.0]


def test_threshold_applies_before_collapsing():
    out = implicit_feedback(_frame(), FeedbackConfig(min_rating=4))
    assert sorted(zip(out.user_id, out.item_id)) == [("a", "x"), ("b", "x"), ("b", "y")]
    assert out.loc[out.user_id == "a", "timestamp"].tolist() == [10.0]


def test_k_core_iterates_until_stable():
    out = k_core(implicit_feedback(_frame()), 2)
    assert sorted(zip(out.user_id, out.item_id)) == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]
