#!/usr/bin/env bash
# GPU embedding throughput in one short run: MiniLM text, ResNet-50 and ViT-B-32 on cuda at
# fp32, bf16 and fp16, end to end and forward-only, with each precision's cosine against
# fp32. Writes benchmarks/results/gpu_embed.{json,md}.
#
#   benchmarks/gpu_embed.sh              # needs a CUDA device and the project installed (make install)
#   benchmarks/gpu_embed.sh --dry-run    # or DRY_RUN=1: the same code on the CPU, tiny sizes,
#                                        # results in a temporary folder (printed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
args=("$@")
if [ "${DRY_RUN:-0}" != "0" ]; then
    args+=(--dry-run)
fi
exec "$PYTHON" benchmarks/gpu_embed.py "${args[@]}"
