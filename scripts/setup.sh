#!/usr/bin/env bash
# One command from a fresh clone: install dependencies, build vflash for every
# shipped GPU target (the libraries and the CLI: everything `cmake --install`
# installs), then run `vflash doctor` and a demo attention call (on the GPU when
# there is one, else on the CPU reference).
# Narrow the build for quick local work: VFLASH_CUDA_ARCHS=90 scripts/setup.sh
# Install as well: VFLASH_PREFIX=$HOME/.local scripts/setup.sh (bin/vflash,
# lib/libvflash.{so,a}, include/vflash, lib/cmake/vflash, lib/pkgconfig).
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$vflash_root/scripts/install_deps.sh"
build="$vflash_root/build"
cmake_configure "$build" -DVFLASH_CUDA_ARCHS="${VFLASH_CUDA_ARCHS:-all}" -DVFLASH_BUILD_TESTS=OFF
ninja -C "$build" -j"$vflash_jobs"
"$build/vflash" doctor
"$build/vflash" demo
if [ -n "${VFLASH_PREFIX:-}" ]; then
  cmake --install "$build" --prefix "$VFLASH_PREFIX"
  echo "setup: installed into $VFLASH_PREFIX (CLI: $VFLASH_PREFIX/bin/vflash)"
else
  cat <<MSG
setup: built in $build: the CLI build/vflash, the libraries build/libvflash.so and
build/libvflash.a. Install them (CLI in P/bin, libraries in P/lib, headers in P/include,
the CMake package in P/lib/cmake/vflash): cmake --install build --prefix P
MSG
fi
