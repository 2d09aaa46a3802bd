# Common environment for the project's scripts (sourced).
export PATH=/usr/local/cuda/bin:$PATH
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/vflash-ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-8G}
vflash_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Paths below the checkout hash as relative: clones and build dirs share the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$vflash_root}
vflash_jobs=$(nproc)
# cmake_configure <builddir> [extra cmake args]: configure with ccache and Ninja.
cmake_configure() {
  local dir=$1; shift
  cmake -S "$vflash_root" -B "$dir" -G Ninja \
    -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
    -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache "$@"
}
