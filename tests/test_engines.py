"""The engine contract: ``map`` a picklable work over chunks, in order or as they come, on
this process or on Ray actors; the work is built once per worker."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from functools import partial

import pytest

from fusionrank.engines import Work, get_engine
from fusionrank.errors import InvalidArgumentError


class Square:
    """A work built once per worker: it records the process that built it."""

    def __init__(self, offset: int) -> None:
        self.offset, self.pid = offset, os.getpid()

    def __call__(self, chunks: Iterable[int]) -> Iterator[tuple[int, int]]:
        for c in chunks:
            yield c * c + self.offset, self.pid


class Broken:
    def __init__(self) -> None:
        raise FileNotFoundError("no such model file /nowhere/model.safetensors")


def test_the_local_engine_maps_in_order_and_uses_the_work_built_here():
    engine = get_engine("local")
    built: list[int] = []

    def build() -> Square:
        built.append(1)
        return Square(1)

    assert [r for r, _ in engine.map(Work(build=build), [3, 1, 2])] == [10, 2, 5]
    assert built == [1]  # once for the whole map
    here = Square(100)
    assert [r for r, _ in engine.map(Work(build=build, here=here), [2])] == [104]
    assert built == [1], "the work already built here is used, not built again"
    assert engine.summary([1], "chunks") is None and engine.placement(3) == ""


def test_engine_names_are_checked_once():
    with pytest.raises(InvalidArgumentError, match="engine must be local or ray, got 'spark'"):
        get_engine("spark")
    from fusionrank.engines.ray_engine import RayOptions

    with pytest.raises(InvalidArgumentError, match="--actors need"):
        get_engine("local", RayOptions(actors=2), strict=True)
    assert get_engine("local", RayOptions(actors=2)).name == "local"  # a run's ray section, unused


@pytest.mark.usefixtures("ray_instance")
def test_the_ray_engine_maps_in_order_or_as_they_come_on_actors():
    ray = pytest.importorskip("ray")
    import sys

    from fusionrank.engines.ray_engine import RayOptions, WorkerDiedError

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/

    engine = get_engine("ray", RayOptions(actors=2))
    work = Work(build=partial(Square, 1), here=Square(999), threads=1)
    chunks = list(range(7))
    ordered = list(engine.map(work, chunks))
    assert [r for r, _ in ordered] == [c * c + 1 for c in chunks]  # built remotely, not `here`
    assert os.getpid() not in {pid for _, pid in ordered} and len({pid for _, pid in ordered}) == 2
    assert sum(engine.stats.nodes.values()) == 7 and engine.stats.workers == 2
    summary = engine.summary([10] * 7, "chunks")
    assert summary is not None and summary.startswith("ray: 7 chunks on 1 node(s)")
    unordered = sorted(r for r, _ in engine.map(work, chunks, ordered=False))
    assert unordered == sorted(c * c + 1 for c in chunks)
    assert engine.placement(7, work) == "2 Ray actors"
    with pytest.raises(WorkerDiedError, match="could not build its work: .*no such model file"):
        list(get_engine("ray", RayOptions(actors=1, restarts=0)).map(Work(build=Broken), [1, 2]))
