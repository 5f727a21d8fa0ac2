from pathlib import Path

import pytest

from fusionrank.data.atomic import read_atomic
from fusionrank.data.dataset import load_atomic
from fusionrank.data.errors import DataError


def _write(tmp_path: Path, text: str, name: str = "x.inter") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_types_are_parsed(tmp_path):
    p = _write(
        tmp_path, "id:token\ttitle:token_seq\tscore:float\tvec:float_seq\n7\tToy Story\t3.5\t1 2.5\n8\t\t\t\n"
    )
    frame = read_atomic(p)
    assert list(frame.columns) == ["id", "title", "score", "vec"]
    assert frame["id"].tolist() == ["7", "8"]
    assert frame["title"].iloc[0] == ["Toy", "Story"] and frame["title"].iloc[1] == []
    assert frame["score"].iloc[0] == 3.5 and frame["score"].isna().iloc[1]
    assert frame["vec"].iloc[0] == [1.0, 2.5]


def test_bad_float_names_file_row_and_column(tmp_path):
    p = _write(tmp_path, "user_id:token\titem_id:token\trating:float\n1\t2\t3\n1\t3\tfive\n")
    with pytest.raises(DataError) as err:
        read_atomic(p)
    assert err.value.row == 2 and err.value.column == "rating" and err.value.file == str(p)
    assert "x.inter" in str(err.value) and "row 2" in str(err.value)


@pytest.mark.parametrize(
    "header, column", [("user_id\titem_id:token", "user_id"), ("user_id:int\titem_id:token", "user_id")]
)
def test_bad_header(tmp_path, header, column):
    p = _write(tmp_path, header + "\n1\t2\n")
    with pytest.raises(DataError) as err:
        read_atomic(p)
    assert err.value.column == column and err.value.row == 0


def test_empty_and_headless_files(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_atomic(_write(tmp_path, ""))
    with pytest.raises(DataError, match="no data rows"):
        read_atomic(_write(tmp_path, "user_id:token\titem_id:token\n", "y.inter"))


def test_short_row(tmp_path):
    p = _write(tmp_path, "user_id:token\titem_id:token\trating:float\n1\t2\t3\n4\t5\n")
    with pytest.raises(DataError) as err:
        read_atomic(p)
    assert err.value.row == 2


def test_unknown_item_in_interactions(tmp_path):
    (tmp_path / "d.inter").write_text("user_id:token\titem_id:token\na\tx\nb\tz\n")
    (tmp_path / "d.item").write_text("item_id:token\ttitle:token_seq\nx\tX\ny\tY\n")
    with pytest.raises(DataError) as err:
        load_atomic(tmp_path, "d")
    assert err.value.row == 2 and err.value.column == "item_id" and "'z'" in str(err.value)


def test_duplicate_catalogue_id(tmp_path):
    (tmp_path / "d.inter").write_text("user_id:token\titem_id:token\na\tx\n")
    (tmp_path / "d.item").write_text("item_id:token\ttitle:token_seq\nx\tX\ny\tY\nx\tZ\n")
    with pytest.raises(DataError) as err:
        load_atomic(tmp_path, "d")
    assert err.value.row == 3 and "first seen at row 1" in str(err.value)


def test_ml100k_loads_whole(ml100k):
    assert len(ml100k.interactions) == 100_000
    assert ml100k.interactions["user_id"].nunique() == 943
    assert len(ml100k.item_ids) == 1682
    assert ml100k.kg is not None and len(ml100k.kg) > 90_000
    assert set(ml100k.link.columns) == {"item_id", "entity_id"}
    assert ml100k.items.set_index("item_id").loc["1", "movie_title"] == ["Toy", "Story"]
