"""Tiny random models built from configs and saved the way real ones are (save_pretrained,
safetensors, an open_clip folder): for the tests, the benchmarks, and trying the encoders
without downloaded weights. Loaded through the same code paths as real checkpoints.

>>> import tempfile, pathlib
>>> folder = save_tiny_bert(pathlib.Path(tempfile.mkdtemp()) / "bert")
>>> (folder / "config.json").exists() and (folder / "tokenizer.json").exists()
True
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def save_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 32) with all-MiniLM-L6-v2's tokenizer, via save_pretrained."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from fusionrank.encoders.weights import packaged_minilm_dir

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(packaged_minilm_dir())).save_pretrained(folder)
    return folder


def save_tiny_resnet(path: Path, seed: int = 0) -> Path:
    """``resnet18(weights=None)`` saved to safetensors."""
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    save_file(resnet18(weights=None).state_dict(), str(path))
    return path


TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A one-layer open_clip model as a local folder (``open_clip_config.json`` + safetensors)."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    model = open_clip.model.CLIP(**TINY_CLIP)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder
