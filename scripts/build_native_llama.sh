#!/usr/bin/env bash
# Build llama.cpp's own tools (llama-server, llama-completion, llama-speculative-simple, llama-batched-bench)
# from exactly the sources the pinned llama-cpp-python vendors, with the flags its wheel uses on Linux
# (Release, GGML_NATIVE on, no curl). The binaries are cached per version, like pip's wheel cache, so the
# ~5-minute build happens once per machine. Prints the folder holding the binaries.
#
#   scripts/build_native_llama.sh [TARGET ...]      (default: all four)
set -euo pipefail

VERSION=0.3.36  # keep equal to the llama-cpp-python pin in pyproject.toml
CACHE="${TANDEM_NATIVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/llama.cpp-$VERSION}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(llama-server llama-completion llama-speculative-simple llama-batched-bench)
PY="${PYTHON:-python3}"

missing=()
for t in "${TARGETS[@]}"; do [ -x "$CACHE/bin/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -eq 0 ]; then echo "$CACHE/bin"; exit 0; fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # two test runs building at once would clobber each other's tree
src="$CACHE/src/llama_cpp_python-$VERSION"
if [ ! -d "$src/vendor/llama.cpp" ]; then
  "$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$CACHE/src" >&2
  tar xzf "$CACHE/src/llama_cpp_python-$VERSION.tar.gz" -C "$CACHE/src"
fi
cmake -S "$src/vendor/llama.cpp" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >&2
cmake --build "$CACHE/build" --target "${missing[@]}" -j "$(nproc 2>/dev/null || echo 2)" >&2
mkdir -p "$CACHE/bin"
for t in "${missing[@]}"; do cp "$CACHE/build/bin/$t" "$CACHE/bin/$t"; done
echo "$CACHE/bin"
