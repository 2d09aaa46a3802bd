#!/usr/bin/env bash
# Builds bench/mma_bench (check + timing harness of the mma kernel) for one
# GPU architecture, objects compiled in parallel.
#   scripts/bench_mma.sh [OUT_DIR] [ARCH]        (defaults: build-mma-bench, 90)
# With TILES=1 the binary also times the candidate tile shapes listed in mma_bench.cu
# (bench/mma_tiles.md). Run: OUT_DIR/mma_bench check | bench [tiles]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build-mma-bench}
arch=${2:-90}
mkdir -p "$out"
flags=(-std=c++20 -O3 --expt-relaxed-constexpr -lineinfo -I"$root/src" -I"$root/tools"
       -gencode=arch=compute_$arch,code=sm_$arch)
if [[ "${TILES:-0}" == 1 ]]; then flags+=(-DVFLASH_BENCH_TILES); fi
srcs=("$root/bench/mma_bench.cu" "$root"/src/kernels/mma/*.cu)
printf '%s\n' "${srcs[@]}" | xargs -P "$(nproc)" -I{} sh -c \
  'nvcc "$@" -c "{}" -o "'"$out"'/$(basename "{}").o"' _ "${flags[@]}"
nvcc "${flags[@]}" "$out"/*.cu.o -o "$out/mma_bench"
echo "built $out/mma_bench"
