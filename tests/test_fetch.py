import zipfile

import pytest

from fusionrank.data import fetch as fetch_mod
from fusionrank.data.dataset import load_dataset
from fusionrank.data.fetch import FetchError, fetch_ml100k


def _grouplens_folder(folder):
    folder.mkdir()
    (folder / "u.data").write_text("1\t10\t4\t100\n2\t10\t3\t101\n2\t11\t5\t102\n")
    flags = ["0"] * 19
    action = list(flags)
    action[1] = "1"
    action[16] = "1"
    (folder / "u.item").write_text(
        "10|Heat (1995)|01-Jan-1995||http://x|" + "|".join(action) + "\n"
        "11|Untitled|01-Jan-1995||http://x|" + "|".join(flags) + "\n",
        encoding="latin-1",
    )
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    return folder


def test_local_grouplens_folder_and_second_call_is_a_no_op(tmp_path, monkeypatch):
    src = _grouplens_folder(tmp_path / "gl")
    root = tmp_path / "data"
    fetch_ml100k(root, src, log=lambda m: None)
    ds = load_dataset("ml-100k", root)
    assert len(ds.interactions) == 3
    heat = ds.items.set_index("item_id").loc["10"]
    assert heat["movie_title"] == ["Heat"] and heat["release_year"] == "1995"
    assert heat["class"] == ["Action", "Thriller"]
    assert (root / "ml-100k" / "manifest.json").exists()

    def boom(*a, **k):
        raise AssertionError("a second fetch must not download")

    monkeypatch.setattr(fetch_mod, "_from_recbole_wheel", boom)
    msgs = []
    fetch_ml100k(root, log=msgs.append)
    assert "already present" in msgs[0]


def test_local_zip_and_atomic_folder(tmp_path):
    src = _grouplens_folder(tmp_path / "gl")
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in src.iterdir():
            z.write(f, f"ml-100k/{f.name}")
    fetch_ml100k(tmp_path / "a", archive, log=lambda m: None)
    fetch_ml100k(tmp_path / "b", tmp_path / "a", log=lambda m: None)
    assert (tmp_path / "b" / "ml-100k" / "ml-100k.inter").read_text() == (
        tmp_path / "a" / "ml-100k" / "ml-100k.inter"
    ).read_text()


def test_every_source_failing_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(out):
        (out / "ml-100k.inter").write_text("partial")
        raise RuntimeError("index unreachable")

    monkeypatch.setattr(fetch_mod, "_from_recbole_wheel", fail)
    root = tmp_path / "data"
    with pytest.raises(FetchError, match="index unreachable"):
        fetch_ml100k(root, url="http://127.0.0.1:9/ml-100k.zip", log=lambda m: None)
    assert list(root.iterdir()) == []
