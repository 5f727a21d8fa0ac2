"""Models whose memory is quadratic in items say so before they allocate."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import fusionrank as fr
from fusionrank.collab.ease import check_ease_memory, ease_memory
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
