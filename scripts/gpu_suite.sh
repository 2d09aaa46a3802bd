#!/usr/bin/env bash
# GPU validation run, for a host with the GPU:
#   1. configure + build (machine code for VFLASH_CUDA_ARCHS, default 90),
#   2. ctest: every test except the GPU attention suite (CPU tests; GPU tests
#      of other binaries run with the default dispatch),
#   3. the GPU attention suite once with the default dispatch and once per
#      kernel (VFLASH_FORCE_KERNEL), kernels from the arguments, else from
#      $VFLASH_KERNELS, else every kernel `vflash doctor --json` lists,
#   4. compute-sanitizer memcheck and racecheck over a small subset per kernel,
#   5. the GPU backward suite (tests/test_gpu_backward) once per backward kernel
#      `vflash doctor --json` lists (VFLASH_FORCE_KERNEL), with compute-sanitizer
#      memcheck and racecheck over a subset of it,
#   6. a table of passed / failed / skipped counts per run, printed last.
# Logs and gtest XML go to <build>/gpu-suite ($VFLASH_GPU_LOGS); when $OUT names
# a folder, the summary table and a tarball of the logs are copied there too.
#
# A GPU host without network access needs the build's sources that Debian
# packages provide elsewhere (GoogleTest, the nlohmann-json header). Stage them
# into the checkout's .deps on a machine that has them installed:
#   scripts/gpu_suite.sh --stage
# and copy the checkout, .deps included, to the GPU host (about 80 s there on
# an H100 with the Hopper kernel off). Extra cmake arguments: $VFLASH_CMAKE_ARGS
# (e.g. -DVFLASH_BUILD_HOPPER=OFF). Steps 2-4 can be narrowed for split runs:
# VFLASH_SUITE_RUNS="ctest dispatch forced sanitizers backward" (the default, all) lists
# the ones to run. Exit status: nonzero if any step failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
gtest_src="$root/.deps/googletest"

if [ "${1:-}" = "--stage" ]; then
  mkdir -p "$root/.deps"
  rm -rf "$gtest_src"
  cp -r /usr/src/googletest "$gtest_src"
  [ -d /usr/include/nlohmann ] || { echo "gpu_suite: no /usr/include/nlohmann: install nlohmann-json3-dev" >&2; exit 2; }
  rm -rf "$root/.deps/nlohmann_json"
  mkdir -p "$root/.deps/nlohmann_json/include"
  cp -r /usr/include/nlohmann "$root/.deps/nlohmann_json/include/"
  echo "gpu_suite: staged GoogleTest and nlohmann-json in $root/.deps"
  exit 0
fi

export PATH=/usr/local/cuda/bin:$PATH
build=${VFLASH_GPU_BUILD:-$root/build-gpu}
out=${VFLASH_GPU_LOGS:-$build/gpu-suite}
rm -rf "$out"
mkdir -p "$out"
jobs=$(nproc)
status=0
# A hung kernel must not hold the GPU: every GPU step is bounded.
step_timeout=${VFLASH_STEP_TIMEOUT:-150}
summary="$out/summary.txt"
: > "$summary"
t0=$SECONDS

note() { echo "gpu_suite [$((SECONDS - t0)) s]: $*"; }

# --- GoogleTest: the system's, else build the staged sources once.
cmake_extra=()
if ! ls /usr/lib/*/cmake/GTest/GTestConfig.cmake /usr/lib/cmake/GTest/GTestConfig.cmake >/dev/null 2>&1; then
  gtest_prefix=/tmp/vflash-gtest
  if [ ! -f "$gtest_prefix/lib/cmake/GTest/GTestConfig.cmake" ] && [ ! -f "$gtest_prefix/lib64/cmake/GTest/GTestConfig.cmake" ]; then
    [ -d "$gtest_src" ] || { echo "gpu_suite: no GoogleTest here; run '$0 --stage' where it is installed and copy .deps here" >&2; exit 2; }
    note "building GoogleTest from $gtest_src"
    cmake -S "$gtest_src" -B /tmp/vflash-gtest-build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX="$gtest_prefix" -DBUILD_GMOCK=ON >"$out/gtest_build.log" 2>&1 &&
      ninja -C /tmp/vflash-gtest-build install >>"$out/gtest_build.log" 2>&1 ||
      { tail -n 30 "$out/gtest_build.log"; echo "gpu_suite: GoogleTest build failed" >&2; exit 2; }
  fi
  cmake_extra+=("-DCMAKE_PREFIX_PATH=$gtest_prefix")
fi

# --- build
note "configure + build in $build"
# shellcheck disable=SC2086  # VFLASH_CMAKE_ARGS is a list of words
if ! { cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
         -DVFLASH_CUDA_ARCHS="${VFLASH_CUDA_ARCHS:-90}" "${cmake_extra[@]}" ${VFLASH_CMAKE_ARGS:-} &&
       ninja -C "$build" -j"$jobs"; } >"$out/build.log" 2>&1; then
  tail -n 60 "$out/build.log"
  [ -n "${OUT:-}" ] && cp "$out/build.log" "$OUT/"
  echo "gpu_suite: build failed (log: $out/build.log)" >&2
  exit 1
fi
note "build done"
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>&1 | tee "$out/device.txt"
"$build/vflash" doctor --json >"$out/doctor.json" 2>"$out/doctor.err" || status=1

# --- counts of one gtest XML report: "passed failed skipped"
counts() {
  python3 - "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("- - -"); sys.exit()
p = f = s = 0
for case in root.iter("testcase"):
    if case.find("failure") is not None or case.find("error") is not None: f += 1
    elif case.get("result") == "skipped" or case.find("skipped") is not None: s += 1
    elif case.get("status") == "run": p += 1
print(p, f, s)
EOF
}
record() {  # record <label> <exit status> <xml>
  local c
  c=$(counts "$3")
  printf '%-28s %6s %6s %7s   exit %s\n' "$1" $c "$2" >>"$summary"
  [ "$2" -eq 0 ] || status=1
}

runs=" ${VFLASH_SUITE_RUNS:-ctest dispatch forced sanitizers backward} "
wanted() { [[ $runs == *" $1 "* ]]; }

# --- CPU tests (and GPU tests of other binaries)
if wanted ctest; then
  note "ctest (all but test_gpu_attention)"
  ctest --test-dir "$build" --timeout 300 -LE '^test_gpu_attention$' -j"$jobs" --output-on-failure \
    --output-junit "$out/ctest.xml" >"$out/ctest.log" 2>&1
  record "ctest (other tests)" $? "$out/ctest.xml"
fi

# --- the GPU suite per kernel
suite="$build/tests/test_gpu_attention"
if [ $# -gt 0 ]; then
  kernels="$*"
elif [ -n "${VFLASH_KERNELS:-}" ]; then
  kernels=$VFLASH_KERNELS
else
  kernels=$(python3 -c 'import json,sys
print(" ".join(k["name"] for f in json.load(sys.stdin)["families"] for k in f["kernels"]))' <"$out/doctor.json")
fi
note "kernels under test: ${kernels:-none}"

if wanted dispatch; then
  note "GPU suite, default dispatch"
  env -u VFLASH_FORCE_KERNEL timeout "$step_timeout" "$suite" --gtest_output="xml:$out/suite_dispatch.xml" \
    >"$out/suite_dispatch.log" 2>&1
  record "suite: dispatch" $? "$out/suite_dispatch.xml"
fi
wanted forced || kernels_forced=""
for k in ${kernels_forced-$kernels}; do
  note "GPU suite, forced $k"
  VFLASH_FORCE_KERNEL=$k timeout "$step_timeout" "$suite" --gtest_output="xml:$out/suite_$k.xml" >"$out/suite_$k.log" 2>&1
  record "suite: $k" $? "$out/suite_$k.xml"
done

# --- compute-sanitizer on a small subset (the reference runs on the CPU, so
# the cases are small ones covering each feature path).
memcheck_filter='*/d64_bf16_causal:*/d128_fp16_window:*/d256_bf16_full:*/gqa4_d128_causal_fp16:*/dv_192_128_causal_bf16'
memcheck_filter+=':*/softcap_d80_causal_bf16:*/dense_d64_causal_fp16:*/padded_strides_d64_fp16_causal:*/small_dims_d8_bf16'
memcheck_filter+=':*/gqa4_short_d128_causal_bf16:*/gqa6_short_d80_window_padded_fp16:*/windows64_d72_bf16'
memcheck_filter+=':*/tiny_seqs_d64_causal_fp16:*/zero_key_interleaved_*:Random/*/?'
racecheck_filter='*/d64_bf16_causal:*/d128_fp16_window:*/dv_192_128_causal_bf16:*/gqa4_short_d128_causal_fp16'
racecheck_filter+=':*/windows64_d72_bf16:*/zero_key_interleaved_*'
wanted sanitizers || kernels_sanitized=""
for k in ${kernels_sanitized-$kernels}; do
  for tool in memcheck racecheck; do
    filter=$memcheck_filter
    [ $tool = racecheck ] && filter=$racecheck_filter
    note "compute-sanitizer $tool, $k"
    VFLASH_FORCE_KERNEL=$k timeout "$step_timeout" compute-sanitizer --tool $tool --error-exitcode 99 \
      "$suite" --gtest_filter="$filter" --gtest_output="xml:$out/${tool}_$k.xml" >"$out/${tool}_$k.log" 2>&1
    rc=$?
    record "$tool: $k" $rc "$out/${tool}_$k.xml"
    grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$out/${tool}_$k.log" | tail -n 1 | sed "s/^/    $tool $k: /" >>"$summary"
  done
done

# --- the backward suite per backward kernel, and sanitizers over a subset of it
if wanted backward; then
  backward_suite="$build/tests/test_gpu_backward"
  backward_kernels=$(python3 -c 'import json,sys
print(" ".join(k["name"] for f in json.load(sys.stdin)["families"] for k in f.get("backward_kernels", [])))' <"$out/doctor.json")
  note "backward kernels under test: ${backward_kernels:-none}"
  backward_filter='Cases/*/d64_bf16_full*:Cases/*/gqa4_d128_causal_fp16*:Cases/*/dv_192_128_causal_bf16*'
  backward_filter+=':Cases/*/softcap_d80_causal_bf16*:Cases/*/rows_past_end_*:Cases/*/keyless_rows_*'
  backward_filter+=':Cases/*/padded_strides_*:Random/*/?'
  backward_racecheck_filter='Cases/*/gqa4_d128_causal_fp16*:Cases/*/keyless_rows_*:Cases/*/d64_bf16_full*'
  for k in $backward_kernels; do
    note "GPU backward suite, forced $k"
    VFLASH_FORCE_KERNEL=$k timeout "$step_timeout" "$backward_suite" --gtest_output="xml:$out/backward_$k.xml" \
      >"$out/backward_$k.log" 2>&1
    record "backward: $k" $? "$out/backward_$k.xml"
    for tool in memcheck racecheck; do
      note "compute-sanitizer $tool, backward $k"
      # racecheck runs the backward's block-synchronised loops some 100x slower: fewer cases
      filter=$backward_filter
      [ $tool = racecheck ] && filter=$backward_racecheck_filter
      VFLASH_FORCE_KERNEL=$k VFLASH_BWD_RANDOM_CASES=4 timeout "$step_timeout" compute-sanitizer --tool $tool \
        --error-exitcode 99 "$backward_suite" --gtest_filter="$filter" \
        --gtest_output="xml:$out/${tool}_backward_$k.xml" >"$out/${tool}_backward_$k.log" 2>&1
      record "$tool: backward $k" $? "$out/${tool}_backward_$k.xml"
      grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$out/${tool}_backward_$k.log" | tail -n 1 |
        sed "s/^/    $tool backward $k: /" >>"$summary"
    done
  done
fi

note "done"
{
  echo
  echo "=== gpu_suite summary ($(date -u +%FT%TZ), $(head -n 1 "$out/device.txt"))"
  printf '%-28s %6s %6s %7s\n' "run" passed failed skipped
  cat "$summary"
  echo "overall: $([ $status -eq 0 ] && echo PASS || echo FAIL)   logs: $out"
} | tee "$out/summary_table.txt"
if [ -n "${OUT:-}" ]; then
  cp "$out/summary_table.txt" "$OUT/"
  tar czf "$OUT/gpu_suite_logs.tgz" -C "$out" .
fi
exit $status
