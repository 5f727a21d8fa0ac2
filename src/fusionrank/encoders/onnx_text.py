"""The text encoder's ONNX Runtime backend: export once, cache, load, run.

The transformers model is exported by ``torch.onnx.export`` (the TorchScript exporter, eager
attention, dynamic batch and sequence axes) with the same inputs the torch backend gives it
(``input_ids``, ``attention_mask``) and its ``last_hidden_state`` as output; pooling and
normalisation stay in :mod:`fusionrank.encoders.text`, shared by both backends. The file is
cached under ``<fusionrank cache>/onnx/`` (``$FUSIONRANK_CACHE``, else
``~/.cache/fusionrank``), never inside the model folder (a package or the Hugging Face cache
owns that), named by a hash of the source weights' sha256 and the exporter, with a sidecar
JSON that records them. int8 is ``onnxruntime.quantization.quantize_dynamic`` of that file
(int8 weights per channel), leaving the same layers fp32 as the torch backend's int8.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionrank.encoders.precision import KEEP_FP32
from fusionrank.errors import InvalidArgumentError
from fusionrank.io import atomic_path, read_json, sha256_file, write_json

OPSET = 17
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "last_hidden_state"


def require_onnx() -> None:
    """Refuse the backend in one line when its packages are not installed."""
    import importlib.util

    missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise InvalidArgumentError(
            f"--backend onnx needs {' and '.join(missing)}: pip install 'fusionrank[onnx]'"
        )


def onnx_cache_dir() -> Path:
    from fusionrank.data.dataset import default_cache

    return default_cache() / "onnx"


def source_sha256(folder: Path, identity: dict) -> dict[str, str]:
    """The sha256 of each weights file of a model folder (from its identity when known)."""
    from fusionrank.encoders.weights import weight_files

    known = identity.get("sha256")
    if isinstance(known, dict) and known:
        return dict(known)
    return {p.name: sha256_file(p) for p in weight_files(folder)}


def onnx_path(folder: Path, identity: dict, precision: str, name: str = "") -> Path:
    """Where the exported (and, for int8, quantised) model of these weights lives:
    ``<cache>/onnx/<name>-<key>-<precision>.onnx``, the key a hash of the weights' sha256,
    torch's version and the export settings."""
    source = {
        "weights": source_sha256(folder, identity),
        "torch": torch.__version__,
        "opset": OPSET,
        "inputs": INPUTS,
    }
    key = hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name).name or folder.resolve().name)[:40] or "model"
    return onnx_cache_dir() / f"{stem}-{key}-{precision}.onnx"


class _LastHiddenState(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_text_model(folder: Path, path: Path, tokenizer: Any) -> None:
    """Export the transformers model in ``folder`` to ``path`` (atomically)."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder), attn_implementation="eager")
    wrapper = _LastHiddenState(model).eval()  # eval() on the wrapper: export restores its mode
    example = tokenizer(["a padded example", "and a longer second example text"], padding=True)
    args = tuple(torch.tensor(example[k]) for k in INPUTS)
    axes = {k: {0: "batch", 1: "sequence"} for k in (*INPUTS, OUTPUT)}
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about Python-side shape checks
        torch.onnx.export(
            wrapper,
            args,
            str(tmp),
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def quantize_onnx(source: Path, path: Path) -> None:
    """int8 weights (per channel) of every MatMul but those of the layers :data:`KEEP_FP32` names."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = [re.compile(p) for p in KEEP_FP32]
    graph = onnx.load(str(source), load_external_data=False).graph
    exclude = [n.name for n in graph.node if any(p.search(_module_of(n.name)) for p in keep)]
    root, quiet = logging.getLogger(), logging.NullHandler()
    hint = _DropPreprocessHint()
    root.addFilter(hint)  # onnxruntime's "consider pre-processing" notes (we load with ORT_ENABLE_ALL)
    if not root.handlers:
        root.addHandler(quiet)  # and no logging.basicConfig as a side effect of them
    try:
        with atomic_path(path) as tmp:
            quantize_dynamic(
                str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=exclude
            )
    finally:
        root.removeFilter(hint)
        root.removeHandler(quiet)


def _module_of(node: str) -> str:
    """The module path of an exported node: ``/model/encoder/layer.0/output/dense/MatMul``
    -> ``encoder.layer.0.output.dense`` (the wrapper's ``model`` scope dropped)."""
    parts = node.strip("/").split("/")[:-1]
    return ".".join(parts[1:] if parts[:1] == ["model"] else parts)


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


def _write_sidecar(path: Path, **source: Any) -> None:
    write_json(
        path.with_suffix(".json"),
        {
            **{k: str(v) if isinstance(v, Path) else v for k, v in source.items()},
            "torch": torch.__version__,
            "opset": OPSET,
            "sha256": sha256_file(path),
        },
    )


def ensure_onnx(folder: Path, identity: dict, precision: str, tokenizer: Any, name: str = "") -> Path:
    """The cached ONNX file of these weights at ``precision`` (fp32/int8), made if missing
    (``name``: the model's name, for the file name)."""
    source = {"model": folder.resolve(), "weights_sha256": source_sha256(folder, identity)}
    fp32 = onnx_path(folder, identity, "fp32", name)
    if not fp32.exists():
        fp32.parent.mkdir(parents=True, exist_ok=True)
        export_text_model(folder, fp32, tokenizer)
        _write_sidecar(fp32, **source, precision="fp32")
    if precision == "fp32":
        return fp32
    path = onnx_path(folder, identity, precision, name)
    if not path.exists():
        quantize_onnx(fp32, path)
        _write_sidecar(path, **source, precision=precision, quantised_from=fp32.name)
    return path


class OnnxTextModel:
    """An ONNX Runtime session over an exported text model: token ids -> token states."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # idle threads sleep instead of spinning (measured faster on 2 shared cores, and
        # they leave the CPU to tokenisation)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = path.with_suffix(".json")
        self.meta = read_json(meta) if meta.exists() else {}

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``last_hidden_state`` (batch, seq, dim) float32 of a padded batch (CPU tensors)."""
        feed = {k: np.ascontiguousarray(batch[k].numpy(), dtype=np.int64) for k in INPUTS}
        (hidden,) = self.session.run([OUTPUT], feed)
        return torch.from_numpy(hidden)
