"""CUDA graphs for a model's forward pass at a few fixed shapes.

A small model on a large GPU is bound by the host: each batch is a hundred or more kernel
launches from Python, and the GPU finishes each kernel before the next one is queued. A
CUDA graph records the launches of one forward pass at one input shape once and replays
them in one call. :class:`GraphedForward` keeps one graph per input shape (the caller pads
inputs to a few shapes: text to its batch size and to a multiple of its length step),
captured the first time that shape comes, all graphs sharing one memory pool. What it
returns lives in the graph's output buffer until the next replay of that shape: the caller
copies it out (a copy queued on the same stream is enough).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

Inputs = dict[str, torch.Tensor]


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: Inputs
    output: torch.Tensor


class GraphedForward:
    """``forward(inputs) -> tensor`` replayed from CUDA graphs, one per input shape (every
    input tensor of a call has its own fixed shape in the key). At most ``max_graphs``
    shapes are captured; any other shape runs ``forward`` as it is."""

    def __init__(self, forward: Callable[[Inputs], torch.Tensor], max_graphs: int = 32) -> None:
        self.forward = forward
        self.max_graphs = max_graphs
        self.graphs: dict[tuple, _Graph] = {}
        self.pool: Any = None

    @staticmethod
    def key(inputs: Inputs) -> tuple:
        return tuple((k, tuple(v.shape), v.dtype) for k, v in sorted(inputs.items()))

    def __call__(self, inputs: Inputs) -> torch.Tensor:
        key = self.key(inputs)
        graphed = self.graphs.get(key)
        if graphed is None:
            if len(self.graphs) >= self.max_graphs:
                return self.forward(inputs)
            graphed = self.graphs[key] = self._capture(inputs)
        for name, value in inputs.items():
            graphed.inputs[name].copy_(value, non_blocking=True)
        graphed.graph.replay()
        return graphed.output

    def _capture(self, inputs: Inputs) -> _Graph:
        """One graph of ``forward`` at the inputs' shapes: a warm-up on a side stream (lazy
        initialisation, kernel choices), then the capture, into the shared pool."""
        static = {k: v.clone() for k, v in inputs.items()}
        current = torch.cuda.current_stream()
        side = torch.cuda.Stream()
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(2):
                self.forward(static)
        current.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self.pool):
            output = self.forward(static)
        return _Graph(graph, static, output)


def pow2_rows(n: int) -> int:
    """The rows a batch of ``n`` is padded to: the next power of two (few graph shapes)."""
    return 1 << max(n - 1, 0).bit_length()


def graph_rows(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` of a batch-first tensor on a GPU (pixels, say), replayed from CUDA graphs: the
    batch padded with zero rows to :func:`pow2_rows`, the answer cut back to its rows."""
    graphed = GraphedForward(lambda inputs: fn(inputs["x"]))

    def run(x: torch.Tensor) -> torch.Tensor:
        n, rows = len(x), pow2_rows(len(x))
        if rows != n:
            x = torch.cat([x, x.new_zeros((rows - n, *x.shape[1:]))])
        return graphed({"x": x.contiguous()})[:n]

    return run
