#!/usr/bin/env bash
# Builds everything (all shipped GPU targets) and runs the whole test suite:
# C++ tests (GPU tests report skipped without a GPU), a bounded fuzz run, the
# generated-instantiation checks and the Python package's tests in a clean venv.
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$vflash_root/scripts/install_deps.sh"
build="$vflash_root/build-test"
t0=$SECONDS
cmake_configure "$build" -DVFLASH_CUDA_ARCHS="${VFLASH_CUDA_ARCHS:-all}"
ninja -C "$build" -j"$vflash_jobs"
echo "test.sh: build took $((SECONDS - t0)) s"
ctest --test-dir "$build" --output-on-failure -j"$vflash_jobs"

# Fuzz validation, parsing and dispatch for a bounded time.
"$vflash_root/fuzz/run_fuzz.sh" "$vflash_root/build-fuzz" "${VFLASH_FUZZ_SECONDS:-60}"

# Python package: install into a fresh venv and run its tests.
if [ -f "$vflash_root/pyproject.toml" ]; then
  "$vflash_root/scripts/test_python.sh"
fi
echo "test.sh: all passed in $((SECONDS - t0)) s"
