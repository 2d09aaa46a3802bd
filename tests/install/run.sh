#!/usr/bin/env bash
# Installs a built vflash tree into a temporary prefix, moves the prefix (the
# package must be relocatable) and builds and runs the consumer project of this
# folder against it: C++ and C, shared and static, through
# find_package(vflash CONFIG REQUIRED); then the same two C programs through
# pkg-config, and the installed CLI. Runs on the CPU reference (no GPU needed).
#
# usage: tests/install/run.sh <vflash build dir>   (registered in ctest)
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/staged" > "$work/install.log"
mv "$work/staged" "$work/prefix"
prefix=$work/prefix
lib=$(ls -d "$prefix"/lib*/cmake/vflash | head -1)
libdir=$(dirname "$(dirname "$lib")")
echo "installed: $(cd "$prefix" && find . -type f -o -type l | sort | tr '\n' ' ')"

# The shared library holds the CUDA runtime: no libcudart among its dependencies.
if objdump -p "$libdir/libvflash.so" | grep -q 'NEEDED.*cudart'; then
  echo "libvflash.so depends on a shared CUDA runtime" >&2; exit 1
fi

cmake -S "$here" -B "$work/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" > "$work/configure.log" || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/consumer" > "$work/build.log" || { cat "$work/build.log"; exit 1; }
for exe in consumer_cxx_shared consumer_cxx_static consumer_c_shared consumer_c_static; do
  echo "== $exe"
  "$work/consumer/$exe"
done
# The static programs carry everything: no libvflash.so, no libcudart.so.
for exe in consumer_cxx_static consumer_c_static; do
  if objdump -p "$work/consumer/$exe" | grep -Eq 'NEEDED.*(vflash|cudart)'; then
    echo "$exe links a shared vflash or CUDA runtime" >&2; exit 1
  fi
done

if command -v pkg-config >/dev/null; then
  export PKG_CONFIG_PATH=$libdir/pkgconfig
  cc=${CC:-cc}
  # shellcheck disable=SC2046  # pkg-config's flags are meant to split
  $cc -o "$work/pc_shared" "$here/consumer.c" $(pkg-config --cflags --libs vflash) -lm -Wl,-rpath,"$libdir"
  # shellcheck disable=SC2046
  $cc -o "$work/pc_static" "$here/consumer.c" $(pkg-config --cflags --libs vflash_static)
  echo "== pkg-config vflash"; "$work/pc_shared"
  echo "== pkg-config vflash_static"; "$work/pc_static"
fi

echo "== installed CLI"
"$prefix/bin/vflash" doctor --json | python3 -c 'import json, sys; r = json.load(sys.stdin); print("vflash doctor:", r["version"], [f["name"] for f in r["families"]])'
echo "install test: passed"
