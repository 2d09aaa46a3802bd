#!/usr/bin/env bash
# The Python package's tests: `pip install .` into a fresh virtual environment
# (build dependencies pinned in pyproject.toml, fetched by pip), then pytest.
# Without a GPU the torch/CuPy GPU tests report skipped; the CPU tests (numpy,
# the CPU reference) always run. The extension is built for one capability
# (VFLASH_PY_CUDA_ARCHS, default 75: the smallest build that links) because the
# CPU tests need no GPU code; the C++ build covers every target.
set -euo pipefail
source "$(dirname "$0")/env.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q numpy==2.4.6 pytest==9.2.0
"$work/venv/bin/python" -m pip install -q "$vflash_root" \
  -C cmake.define.VFLASH_CUDA_ARCHS="${VFLASH_PY_CUDA_ARCHS:-75}" -C build-dir="$vflash_root/build-python" \
  -C cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache -C cmake.define.CMAKE_CUDA_COMPILER_LAUNCHER=ccache
cd "$work" && "$work/venv/bin/python" -m pytest "$vflash_root/python/tests" -q
