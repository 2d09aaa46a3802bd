#!/usr/bin/env bash
# The whole GPU validation in one run, on a GPU host (no network needed):
#   1. scripts/gpu_suite.sh: build (sm_90/sm_90a + the Python extension), CPU
#      tests, the GPU suite with default dispatch and each kernel forced,
#      compute-sanitizer memcheck/racecheck subsets;
#   2. `vflash doctor` on the real GPU;
#   3. the Python package's GPU tests (torch, torch.compile, CUDA graphs, CuPy)
#      and the Qwen-VL vision-block example;
#   4. bench/bench_peers.py: vflash and the peers side by side (table + PNG) on
#      workloads.json and vflash's short-GQA workload, each case's peers timed
#      in 3 alternating rounds; then the portable kernel (mma forced) against
#      torch's FA2 in 5 alternating rounds (mma/bench_peers.md);
# Needs the sources staged in .deps (scripts/gpu_suite.sh --stage) where the host
# lacks GoogleTest or nlohmann-json. Results go to $OUT when it names a folder.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Results gather in $out; at the end they are copied to $OUT as one tarball, beside
# the summary table and the peer tables and plot.
out=/tmp/vflash-out
mkdir -p "$out"
build=/tmp/vflash-build
py=$(command -v python3)
status=0
OUT= VFLASH_GPU_BUILD=$build VFLASH_GPU_LOGS=$out/gpu-suite VFLASH_CMAKE_ARGS="-DVFLASH_BUILD_PYTHON=ON -DPython_EXECUTABLE=$py" \
  scripts/gpu_suite.sh simt_reference mma hopper || status=1
[ -x "$build/vflash" ] || exit 1
"$build/vflash" doctor >"$out/doctor.txt" 2>&1 || status=1

mkdir -p /tmp/pkg/vflash && cp -r python/vflash/* "$build"/python/_C*.so /tmp/pkg/vflash/
export PYTHONPATH=/tmp/pkg PYTHONUNBUFFERED=1
timeout 150 "$py" -m pytest python/tests -q -p timeout --timeout 120 --timeout-method thread \
  >"$out/pytest.log" 2>&1 || status=1
tail -n 3 "$out/pytest.log"
timeout 60 "$py" examples/qwen_vl_vision_block.py >"$out/example.log" 2>&1 || status=1
tail -n 4 "$out/example.log"
timeout 300 "$py" bench/bench_peers.py bench/workloads.json bench/workloads_short_gqa.json --rounds 3 --out "$out" \
  >"$out/bench_peers.log" 2>&1 || status=1
timeout 200 "$py" bench/bench_peers.py bench/workloads.json bench/workloads_short_gqa.json --kernel mma --rounds 5 \
  --peers torch-sdpa-fa2,torch-fa2-varlen,vflash --out "$out/mma" >"$out/bench_peers_mma.log" 2>&1 || status=1
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/device_results.tgz" -C "$out" .
  cp "$out"/bench_peers.md "$out"/bench_peers.png "$out"/gpu-suite/summary_table.txt "$OUT/" 2>/dev/null
  cp "$out"/mma/bench_peers.md "$OUT/bench_peers_mma.md" 2>/dev/null
fi
cat "$out/gpu-suite/summary_table.txt"
cat "$out/bench_peers.md" 2>/dev/null | head -n 60
head -n 22 "$out/mma/bench_peers.md" 2>/dev/null
echo "device_validate: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
