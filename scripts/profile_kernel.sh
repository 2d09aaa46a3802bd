#!/usr/bin/env bash
# Hardware counters of one vflash kernel on single workloads, for a host
# with the GPU (ncu must be allowed to read counters there; clocks are left alone):
#   [KERNEL=hopper|mma|simt] scripts/profile_kernel.sh VFLASH_BINARY WORKLOADS_JSON NAME...
# For each NAME of WORKLOADS_JSON, runs `VFLASH_BINARY bench` on that workload
# alone with the kernel forced to KERNEL (default hopper) and prints, for one launch after
# warm-up: duration, L2 traffic and throughput (bytes, sectors, requests from
# the SMs), SM/tensor throughput, issue activity and the stall reasons per
# issued instruction, tensor-pipe activity and shared-memory bank conflicts.
# docs/tuning.md quotes such counters.
set -euo pipefail
kernel=${KERNEL:-hopper}
bin=$1
workloads=$2
shift 2
metrics=gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second,lts__t_bytes.sum.per_second
metrics+=,lts__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sectors.sum,lts__t_requests_srcunit_tex.sum
metrics+=,sm__throughput.avg.pct_of_peak_sustained_elapsed,smsp__issue_active.avg.pct_of_peak_sustained_elapsed
metrics+=,smsp__inst_executed.sum,dram__bytes.sum.per_second
metrics+=,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed,launch__registers_per_thread
metrics+=,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,smsp__inst_executed_op_ldsm.sum
for r in long_scoreboard barrier membar wait math_pipe_throttle mio_throttle lg_throttle short_scoreboard \
  dispatch_stall sleeping selected not_selected no_instruction branch_resolving misc; do
  metrics+=,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for name in "$@"; do
  python3 - "$workloads" "$name" "$tmp/one.json" <<'PY'
import json, sys
w = json.load(open(sys.argv[1]))
w["dense"] = [e for e in w.get("dense", []) if e["name"] == sys.argv[2]]
w["varlen"] = [e for e in w.get("varlen", []) if e["name"] == sys.argv[2]]
if not w["dense"] and not w["varlen"]:
    sys.exit(f"profile_kernel: no workload named {sys.argv[2]}")
json.dump(w, open(sys.argv[3], "w"))
PY
  echo "=== $name ($bin, $kernel)"
  timeout 120 ncu --clock-control none --kernel-name regex:fwd_kernel --launch-skip 3 --launch-count 1 \
    --metrics "$metrics" --csv "$bin" bench "$tmp/one.json" --kernel "$kernel" 2>/dev/null |
    grep -v '^==' | awk -F'","' 'NR > 1 && NF > 5 { gsub(/"/, "", $NF); print $(NF - 2), $(NF - 1), $NF }'
done
