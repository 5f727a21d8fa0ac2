#!/usr/bin/env bash
# One GPU run of benchmarks/gpu_embed.py on a lent machine that has torch, transformers,
# torchvision, sentence-transformers, onnxruntime, pandas and pyarrow but not this project's
# other packages (lightgbm, datasets, open_clip_torch, ftfy, the packaged MiniLM) and no
# network: they travel as wheels in .whl/ and an fp16 copy of MiniLM in
# benchmarks/.minilm-fp16/ (both git-ignored; about 51 MiB together, under the 64 MiB a
# run may carry).
#
#   benchmarks/gpu_device_run.sh --prepare   # here, with the network: download the wheels
#                                            # (python 3.12, manylinux x86_64) and pack MiniLM
#   benchmarks/gpu_device_run.sh             # there: install, restore MiniLM, run, results in $OUT
#
# On the device: carry [".whl", "benchmarks/.minilm-fp16"]; MILLION=N sets the big job's
# texts (default 1,000,000), LIMIT the benchmark's seconds (default 480); results and the log
# go to $OUT (else benchmarks/results).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
    lightgbm==4.7.0          # imported by `import fusionrank` (the ranker)
    datasets==5.2.0          # the engine reads catalogues through it
    dill==0.4.1              # datasets
    multiprocess==0.70.19    # datasets
    open_clip_torch==3.3.0   # ViT-B-32
    ftfy==6.3.1              # open_clip
    wcwidth==0.9.4           # ftfy
)

if [ "${1:-}" = "--prepare" ]; then
    PY="${PYTHON:-.venv/bin/python}"
    mkdir -p .whl
    for spec in "${WHEELS[@]}"; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform any -d .whl "$spec"
    done
    "$PY" benchmarks/pack_minilm_fp16.py
    total=$(du -cb .whl benchmarks/.minilm-fp16 | tail -1 | cut -f1)
    echo "to carry: .whl benchmarks/.minilm-fp16 ($((total / 1048576)) MiB; the limit is 64 MiB with the tree)"
    [ "$total" -lt $((60 * 1048576)) ] || { echo "error: too big to carry" >&2; exit 1; }
    exit 0
fi

OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_device_run.log") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -m pip show torch transformers torchvision sentence-transformers pyarrow fsspec huggingface-hub \
    2>/dev/null | grep -E '^(Name|Version)' | paste - - || true
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
# the project itself, without its dependencies (src/ on the path if the build fails)
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . \
    || export PYTHONPATH=/tmp/site:$PWD/src
python3 benchmarks/pack_minilm_fp16.py --restore /tmp/minilm
export PYTHONUNBUFFERED=1
python3 -c "import fusionrank, datasets, lightgbm, open_clip, torch; print('imports ok; cuda', torch.cuda.is_available())"
# LIMIT seconds (default 480), then the stacks of every thread (SIGUSR1) and a kill 20 s later;
# the tables written so far stay in $OUT
timeout -s USR1 -k 20 "${LIMIT:-480}" \
    python3 benchmarks/gpu_embed.py --text-model /tmp/minilm --out "$OUT" ${MILLION:+--million "$MILLION"}
