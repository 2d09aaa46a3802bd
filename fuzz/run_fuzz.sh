#!/usr/bin/env bash
# Build the libFuzzer target and run it for a bounded time.
#   fuzz/run_fuzz.sh <builddir> [seconds]
# Host code is compiled by clang++ with libFuzzer, ASan and UBSan; nvcc keeps
# g++ as its host compiler. Only the portable SIMT kernel's sm_75 code is built
# by default (VFLASH_FUZZ_ARCHS overrides): the fuzzer exercises host logic,
# and dispatch is also fuzzed over synthetic kernel tables.
# The seed corpus is generated into <builddir>/fuzz-corpus; crashes land in
# <builddir>/fuzz-artifacts and fail the script.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 <builddir> [seconds]" >&2
  exit 2
fi
build=$1
seconds=${2:-60}
src=$(cd "$(dirname "$0")/.." && pwd)
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
# Debian's clang-14 package installs clang++-14; the unversioned name comes from
# the 'clang' package, which may be absent.
cxx=${VFLASH_FUZZ_CXX:-$(command -v clang++ || command -v clang++-14 || true)}
cc=${VFLASH_FUZZ_CC:-$(command -v clang || command -v clang-14 || true)}
if [[ -z $cxx || -z $cc ]]; then
  echo "run_fuzz.sh: clang++ (Debian clang-14, libclang-rt-14-dev) is required" >&2
  exit 1
fi

cmake -S "$src" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_CUDA_HOST_COMPILER=g++ \
  -DVFLASH_CUDA_ARCHS="${VFLASH_FUZZ_ARCHS:-75}" \
  -DVFLASH_BUILD_FUZZ=ON -DVFLASH_BUILD_TESTS=OFF
cmake --build "$build" --target fuzz_validate_dispatch

corpus="$build/fuzz-corpus"
artifacts="$build/fuzz-artifacts"
mkdir -p "$corpus" "$artifacts"
# Seeds: varied byte patterns (the target decodes any bytes; these just give
# the fuzzer distinct starting points down both the call and the parser paths).
python3 - "$corpus" <<'PY'
import os, random, sys
out = sys.argv[1]
rng = random.Random(1234)
texts = [b"10.3", b"sm_103a", b"compute_100f", b"sm_90a;compute_80;sm_121", b"12.1", b"75"]
for i, t in enumerate(texts):
    open(os.path.join(out, f"parse_{i}"), "wb").write(b"\x01" + bytes([len(t)]) + t + bytes(8))
for i in range(24):
    n = rng.randrange(16, 160)
    data = bytes([0]) + bytes(rng.randrange(256) for _ in range(n))
    open(os.path.join(out, f"call_{i}"), "wb").write(data)
PY

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
"$build/fuzz/fuzz_validate_dispatch" "$corpus" \
  -max_total_time="$seconds" -max_len=512 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$artifacts/" -print_final_stats=1
