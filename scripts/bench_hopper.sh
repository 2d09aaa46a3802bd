#!/usr/bin/env bash
# Hopper kernel check + timing, on a host with a Hopper GPU (9.0):
#   1. `src/kernels/hopper/instances.py --check`: the instantiation files match the table,
#   2. configure + build (sm_90a) the CLI in $BUILD (default build-hopper),
#   3. the SASS holds HGMMA (wgmma) and UTMALDG (TMA) instructions and no
#      local-memory spills in the hopper kernels,
#   4. `vflash bench` on the workloads with the kernel forced (CUDA events,
#      medians, L2 flushed; TFLOP/s at the true head dim).
# Correctness is the GPU suite's job: VFLASH_KERNELS=hopper scripts/gpu_suite.sh
#   scripts/bench_hopper.sh [WORKLOADS_JSON]   (default bench/workloads.json)
# Without network there, stage the build's sources first: scripts/gpu_suite.sh --stage.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build-hopper}
workloads=${1:-$root/bench/workloads.json}
export PATH=/usr/local/cuda/bin:$PATH

python3 "$root/src/kernels/hopper/instances.py" --check
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVFLASH_CUDA_ARCHS=90 -DVFLASH_BUILD_TESTS=OFF >/dev/null
ninja -C "$build" -j"$(nproc)" vflash_cli

objs=("$build"/CMakeFiles/vflash_kernel_hopper.dir/src/kernels/hopper/inst_*.o)
sass=$(cuobjdump -sass "${objs[@]}")
hgmma=$(grep -c HGMMA <<<"$sass" || true)
tma=$(grep -c UTMALDG <<<"$sass" || true)
spills=$(grep -cE '\b(LDL|STL)\b' <<<"$sass" || true)
echo "bench_hopper: SASS of ${#objs[@]} instantiations: $hgmma HGMMA, $tma UTMALDG, $spills LDL/STL"
[[ $hgmma -gt 0 && $tma -gt 0 ]] || { echo "bench_hopper: no wgmma/TMA in the hopper kernels" >&2; exit 1; }

"$build/vflash" bench "$workloads" --kernel hopper
