#!/usr/bin/env bash
# One command from a fresh clone: install dependencies, build vflash for every
# shipped GPU target, then run `vflash doctor` and a demo attention call (on the
# GPU when there is one, else on the CPU reference).
# Narrow the build for quick local work: VFLASH_CUDA_ARCHS=90 scripts/setup.sh
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$vflash_root/scripts/install_deps.sh"
build="$vflash_root/build"
cmake_configure "$build" -DVFLASH_CUDA_ARCHS="${VFLASH_CUDA_ARCHS:-all}" -DVFLASH_BUILD_TESTS=OFF
ninja -C "$build" -j"$vflash_jobs" vflash_cli
"$build/vflash" doctor
"$build/vflash" demo
