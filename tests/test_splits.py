import numpy as np
import pandas as pd
import pytest

from fusionrank.data.dataset import load_dataset
from fusionrank.data.idmap import IdMap
from fusionrank.data.splits import SPLIT_KINDS, Split, SplitConfig, make_split, prepare_split, ratio_counts


def _pairs(frame):
    return set(zip(frame.user_id, frame.item_id))


@pytest.mark.parametrize("kind", SPLIT_KINDS)
def test_parts_partition_the_data_and_are_deterministic(tiny_root, kind):
    ds = load_dataset("tiny", tiny_root)
    a = make_split(ds, SplitConfig(kind=kind, seed=3))
    b = make_split(ds, SplitConfig(kind=kind, seed=3))
    parts = [_pairs(a.train), _pairs(a.valid), _pairs(a.test)]
    assert sum(len(p) for p in parts) == len(ds.interactions)
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    for name in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(a.part(name), b.part(name))
    assert len(a.test) > 0 and len(a.valid) > 0


@pytest.mark.parametrize("kind", ["ratio", "cold-items", "cold-users"])
def test_another_seed_gives_another_split(tiny_root, kind):
    ds = load_dataset("tiny", tiny_root)
    assert _pairs(make_split(ds, SplitConfig(kind=kind, seed=1)).test) != _pairs(
        make_split(ds, SplitConfig(kind=kind, seed=2)).test
    )


def test_ratio_counts_follow_recbole_rounding():
    assert ratio_counts(np.array([20, 12, 3, 2]), (0.8, 0.1, 0.1)).tolist() == [
        [16, 2, 2],
        [10, 1, 1],
        [1, 1, 1],
        [1, 0, 1],
    ]


def test_ratio_split_per_user_counts(ml100k):
    split = make_split(ml100k, SplitConfig(kind="ratio", seed=2020))
    sizes = ml100k.interactions.groupby("user_id").size()
    expected = ratio_counts(sizes.to_numpy(), (0.8, 0.1, 0.1))
    got = np.stack(
        [
            split.part(p).groupby("user_id").size().reindex(sizes.index, fill_value=0)
            for p in ("train", "valid", "test")
        ],
        axis=1,
    )
    np.testing.assert_array_equal(got, expected)
    assert (len(split.train), len(split.valid), len(split.test)) == (80808, 9596, 9596)


def test_temporal_splits_respect_time(tiny_root):
    ds = load_dataset("tiny", tiny_root)
    s = make_split(ds, SplitConfig(kind="temporal-ratio"))
    last_train = s.train.groupby("user_id").timestamp.max()
    first_test = s.test.groupby("user_id").timestamp.min()
    assert (last_train.reindex(first_test.index) <= first_test).all()
    ll = make_split(ds, SplitConfig(kind="leave-last"))
    assert ll.test.groupby("user_id").size().eq(1).all() and ll.valid.groupby("user_id").size().eq(1).all()
    latest = ds.interactions.sort_values("timestamp").groupby("user_id").tail(1)
    assert _pairs(ll.test) == _pairs(latest)
    g = make_split(ds, SplitConfig(kind="global-temporal"))
    assert (
        g.train.timestamp.max()
        <= g.valid.timestamp.min()
        <= g.valid.timestamp.max()
        <= g.test.timestamp.min()
    )


def test_cold_items_never_seen_in_training(ml100k):
    s = make_split(ml100k, SplitConfig(kind="cold-items", seed=2020))
    cold = set(s.test.item_id)
    assert not cold & set(s.train.item_id) and not cold & set(s.valid.item_id)
    n_items = ml100k.interactions.item_id.nunique()
    assert len(cold) == round(0.2 * n_items) == len(s.meta["cold_items"])
    u = make_split(ml100k, SplitConfig(kind="cold-users", seed=2020))
    assert not set(u.test.user_id) & set(u.train.user_id)
    assert len(set(u.test.user_id)) == round(0.1 * 943)


def test_cold_items_with_warm_test_rows_keep_the_cold_items_and_add_warm_truth(ml100k):
    plain = make_split(ml100k, SplitConfig(kind="cold-items", seed=2020))
    mixed = make_split(ml100k, SplitConfig(kind="cold-items", seed=2020, warm_test_ratio=0.1))
    cold = set(mixed.meta["cold_items"])
    # the same items held out, and the few warm ones whose only rows went to test are cold too
    assert set(plain.meta["cold_items"]) <= cold and len(cold) - len(plain.meta["cold_items"]) < 10
    assert not cold & set(mixed.train.item_id) and not cold & set(mixed.valid.item_id)
    warm_test = mixed.test[~mixed.test.item_id.isin(cold)]
    assert set(warm_test.item_id) <= set(mixed.train.item_id) | set(mixed.valid.item_id)  # seen before test
    assert 0.07 < len(warm_test) / (len(mixed.train) + len(mixed.valid) + len(warm_test)) < 0.13
    assert plain.config.name == "cold-items-0.2-seed2020"
    assert mixed.config.name == "cold-items-0.2-warmtest0.1-seed2020"


def test_save_load_round_trip_and_idmap(tiny_root, tmp_path):
    ds = load_dataset("tiny", tiny_root)
    s = prepare_split(ds, SplitConfig(kind="ratio", seed=5), tmp_path)
    loaded = Split.load(tmp_path / "tiny" / "splits" / "ratio-seed5")
    assert loaded.config == s.config and loaded.users == s.users and loaded.items == s.items
    for name in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(loaded.part(name), s.part(name))
    assert (loaded.matrix("train", "valid") != s.matrix("train", "valid")).nnz == 0
    m = IdMap(["b", "a"])
    m.save(tmp_path / "ids.parquet")
    assert IdMap.load(tmp_path / "ids.parquet").to_index(["a", "b"]).tolist() == [1, 0]
    with pytest.raises(KeyError):
        m.to_index(["zz"])


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="unknown split"):
        SplitConfig(kind="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cold_share"):
        SplitConfig(kind="cold-items", cold_share=1.5)
    with pytest.raises(ValueError, match="warm_test_ratio applies to cold-items"):
        SplitConfig(kind="ratio", warm_test_ratio=0.1)
    with pytest.raises(ValueError, match=r"warm_test_ratio must be in \[0, 1 - cold_valid_ratio\)"):
        SplitConfig(kind="cold-items", warm_test_ratio=0.95)
