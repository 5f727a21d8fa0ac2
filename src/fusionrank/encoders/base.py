"""The encoder contract: what every encoder is (:class:`Encoder`), the defaults a user's own
encoder may inherit (:class:`BaseEncoder`), and the two fast paths the batch engine takes
when an encoder offers them (:class:`TokenEncoder`, :class:`PixelEncoder`).

An encoder is a class with a frozen dataclass config (``config_class``), built as
``cls(config, device)``, that says what it reads (``inputs``: composed item text, decoded
RGB images, or both) and turns a batch of them into float32 vectors ``(n, dim)``. The batch
engine asks for nothing else; it asks for a fast path with ``isinstance``, never by name.
A user's own encoder needs a config, what it reads, ``dim`` and ``encode``:

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class OnesConfig:
...     dim: int = 2
>>> class Ones(BaseEncoder):
...     config_class = OnesConfig
...     inputs = ("text",)
...     def __init__(self, config, device="cpu"):
...         super().__init__(config, device)
...         self.dim = config.dim
...     def encode(self, batch):
...         return np.ones((len(batch), self.dim), np.float32)
>>> enc = Ones(OnesConfig())
>>> isinstance(enc, Encoder), isinstance(enc, TokenEncoder), enc.encode(["a", "b"]).shape
(True, False, (2, 2))

Defined in ``mypkg``, ``fusionrank embed --encoder mypkg.Ones --set dim=32`` runs it (its
class must be importable by that dotted path wherever the job runs, Ray workers included);
:class:`fusionrank.testing.EncoderTests` checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, cast, runtime_checkable

import numpy as np

from fusionrank.errors import FusionRankError

if TYPE_CHECKING:
    import torch
    from PIL import Image

InputKind = Literal["text", "image"]
"""What an encoder reads: ``text`` (an item's composed text) or ``image`` (its decoded RGB image)."""

INPUT_KINDS: tuple[InputKind, ...] = ("text", "image")

Batch = Sequence[str] | Sequence["Image.Image"]
"""What :meth:`Encoder.encode` takes: texts, or RGB PIL images."""


class EncoderContractError(FusionRankError, ValueError):
    """An encoder was given, or gave back, something outside the contract (images to a
    text encoder, vectors of another shape than ``(n, dim)``)."""


@runtime_checkable
class Encoder(Protocol):
    """The one encoder contract.

    The class names its config (``config_class``, a frozen dataclass whose fields are the
    encoder's settings) and what it reads (``inputs``); ``cls(config, device)`` builds it.
    An instance knows its output size (``dim``), the JSON values that decide its weights
    (``identity``, recorded in ``job.json``: a rerun with other weights is refused),
    whether its vectors have unit norm (``normalized``), and the numeric precision and
    backend it runs (recorded in the manifest)."""

    config_class: ClassVar[type]
    """Its config: a frozen dataclass, built from settings by ``fusionrank.settings.build_settings``."""
    inputs: ClassVar[tuple[InputKind, ...]]
    """What it reads: ``("text",)``, ``("image",)``, or both (CLIP)."""
    dim: int
    """Length of each vector."""
    identity: dict[str, Any]
    """JSON values that decide its weights (a path and sha256, a hub revision ...)."""
    normalized: bool
    """True when every vector has unit L2 norm."""
    precision: str
    """``fp32``, ``int8``, ``bf16`` or ``fp16``: what it runs at (vectors are float32 anyway)."""
    backend: str
    """What runs it: ``torch``, ``onnx`` ..."""

    def __init__(self, config: Any, device: str = "cpu") -> None: ...

    def encode(self, batch: Batch) -> np.ndarray:
        """Vectors of a batch, in order: float32 ``(len(batch), dim)``; ``(0, dim)`` for an empty one."""
        ...

    @classmethod
    def check(cls, config: Any, device: str) -> None:
        """Refuse, in one line (``ValueError``), a config it cannot run on ``device``
        (a precision that device lacks); called when a job's settings are built, before
        any weights load."""
        ...


@runtime_checkable
class TokenEncoder(Protocol):
    """A text fast path: the engine tokenises a shard's texts at once (ahead, in a thread,
    when a GPU runs the model) and feeds batches of rows of the token sequence."""

    sort_by_length: bool
    """Batch rows longest first, so each batch pads to a length close to all of its rows'
    (BERT); False for a fixed context length (CLIP)."""

    def tokenize(self, texts: list[str]) -> Sequence[Any]:
        """One token sequence per text, unpadded where the model allows it."""
        ...

    def encode_tokens(self, tokens: Sequence[Any], rows: list[int]) -> torch.Tensor:
        """Vectors ``(len(rows), dim)`` float32 of ``tokens[r]`` for ``r`` in ``rows``."""
        ...


@runtime_checkable
class StagedTokenEncoder(Protocol):
    """The token fast path in two stages, so that the engine can overlap them: a batch is
    collated on the host (in the feeding workers, then pinned and copied to the device one
    batch ahead, on a side stream on CUDA) and run on the device. A :class:`TokenEncoder`
    without them runs through ``encode_tokens``."""

    def collate_tokens(self, tokens: Sequence[Any], rows: list[int]) -> dict[str, torch.Tensor]:
        """The batch of ``tokens[r]``, ``r`` in ``rows``, as host tensors (padded if need be)."""
        ...

    def forward_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Vectors ``(n, dim)`` float32, on the device, of a collated batch already there."""
        ...


@runtime_checkable
class PixelEncoder(Protocol):
    """An image fast path: ``preprocess`` runs in the engine's DataLoader workers (decoding
    and resizing overlap the model), the model gets stacked pixel tensors."""

    preprocess: Callable[[Image.Image], torch.Tensor]
    """An RGB PIL image -> its pixel tensor ``(3, H, W)`` (picklable: it goes to workers)."""

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(batch, 3, H, W)`` pixels -> ``(batch, dim)`` float32 vectors."""
        ...


class BaseEncoder:
    """Defaults for a user's own encoder: fp32 on torch, not normalised, no identity beyond
    its config (an encoder without weights), and a :meth:`check` that refuses nothing.

    A subclass sets ``config_class`` and ``inputs``, sets ``dim`` in ``__init__`` (after
    ``super().__init__(config, device)``) and defines :meth:`encode`; it overrides
    ``identity`` when it loads weights, ``normalized`` when its vectors have unit norm."""

    config_class: ClassVar[type]
    inputs: ClassVar[tuple[InputKind, ...]]
    dim: int
    normalized: bool = False
    precision: str = "fp32"
    backend: str = "torch"

    def __init__(self, config: Any, device: str = "cpu") -> None:
        self.config = config
        self.device = device
        self.identity: dict[str, Any] = {}

    def encode(self, batch: Batch) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must define encode(batch)")

    @classmethod
    def check(cls, config: Any, device: str) -> None:
        """Runs anywhere."""


def encoder_label(cls: type) -> str:
    """The dotted path of an encoder class (``package.module.Class``)."""
    return f"{cls.__module__}.{cls.__qualname__}"


def texts_of(batch: Batch, encoder: object) -> list[str]:
    """The batch as texts, or a one-line refusal naming the encoder when it holds anything else."""
    texts: list[Any] = list(batch)
    if not all(isinstance(t, str) for t in texts):
        raise EncoderContractError(f"{type(encoder).__name__} reads text; encode() was given {_kinds(texts)}")
    return cast(list[str], texts)


def images_of(batch: Batch, encoder: object) -> list[Image.Image]:
    """The batch as PIL images, or a one-line refusal naming the encoder."""
    from PIL import Image

    images: list[Any] = list(batch)
    if not all(isinstance(im, Image.Image) for im in images):
        raise EncoderContractError(
            f"{type(encoder).__name__} reads images; encode() was given {_kinds(images)}"
        )
    return cast("list[Image.Image]", images)


def _kinds(items: list[Any]) -> str:
    return ", ".join(sorted({type(x).__name__ for x in items}))


def checked_vectors(encoder: Encoder, vectors: object, n: int) -> np.ndarray:
    """An encoder's output for ``n`` inputs as float32 ``(n, dim)``, or a one-line error."""
    out = np.asarray(vectors)
    if out.shape != (n, encoder.dim):
        raise EncoderContractError(
            f"{type(encoder).__name__}.encode gave an array of shape {out.shape} for {n} inputs; "
            f"expected ({n}, {encoder.dim}) (n, dim)"
        )
    return out.astype(np.float32, copy=False)
