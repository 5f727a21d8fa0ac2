import json

import pandas as pd
import pytest

from fusionrank.data.errors import DataError
from fusionrank.data.loaders import (
    InteractionColumns,
    check_known_items,
    load_catalogue,
    load_interactions,
)

ROWS = [
    {"uid": "u1", "iid": 10, "ts": 5, "stars": 4.0, "dom": "A"},
    {"uid": "u2", "iid": 11, "ts": 6, "stars": 2.0, "dom": "B"},
    {"uid": "u1", "iid": 11, "ts": 7, "stars": 5.0, "dom": "B"},
]
COLS = InteractionColumns(user="uid", item="iid", timestamp="ts", rating="stars", domain="dom")


def _write(tmp_path, fmt, rows=ROWS):
    frame = pd.DataFrame(rows)
    path = tmp_path / f"inter.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "parquet":
        frame.to_parquet(path)
    else:
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl"])
def test_every_format_with_a_column_mapping(tmp_path, fmt):
    frame = load_interactions(_write(tmp_path, fmt), COLS)
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp", "domain"]
    assert frame["item_id"].tolist() == ["10", "11", "11"]
    assert frame["rating"].tolist() == [4.0, 2.0, 5.0]
    assert frame["timestamp"].tolist() == [5.0, 6.0, 7.0]
    assert frame["domain"].tolist() == ["A", "B", "B"]


def test_missing_column_is_named(tmp_path):
    path = _write(tmp_path, "csv")
    with pytest.raises(DataError) as err:
        load_interactions(path, InteractionColumns(user="user", item="iid"))
    assert err.value.column == "user" and "uid" in str(err.value)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_wrong_type_names_row_and_column(tmp_path, fmt):
    rows = [dict(r) for r in ROWS]
    rows[2]["ts"] = "yesterday"
    with pytest.raises(DataError) as err:
        load_interactions(_write(tmp_path, fmt, rows), COLS)
    assert (err.value.row, err.value.column) == (3, "ts")


def test_empty_id_and_empty_file(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[1]["uid"] = ""
    with pytest.raises(DataError) as err:
        load_interactions(_write(tmp_path, "csv", rows), COLS)
    assert (err.value.row, err.value.column) == (2, "uid")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_interactions(empty, COLS)
    header_only = tmp_path / "header.csv"
    header_only.write_text("uid,iid\n")
    with pytest.raises(DataError, match="no data rows"):
        load_interactions(header_only, COLS)


def test_catalogue_duplicates_and_unknown_items(tmp_path):
    cat = tmp_path / "items.csv"
    pd.DataFrame({"movie": ["10", "11", "10"], "title": ["a", "b", "c"]}).to_csv(cat, index=False)
    with pytest.raises(DataError) as err:
        load_catalogue(cat, "movie")
    assert (err.value.row, err.value.column) == (3, "movie")
    pd.DataFrame({"movie": ["10"], "title": ["a"]}).to_csv(cat, index=False)
    catalogue = load_catalogue(cat, "movie")
    path = _write(tmp_path, "csv")
    with pytest.raises(DataError) as err:
        check_known_items(load_interactions(path, COLS), catalogue, path)
    assert err.value.row == 2 and "'11'" in str(err.value)


def test_unsupported_suffix(tmp_path):
    p = tmp_path / "x.xlsx"
    p.write_text("x")
    with pytest.raises(DataError, match="unsupported"):
        load_interactions(p)
