#!/usr/bin/env bash
# Installs everything vflash needs to build and test, pinned, on Debian 12 with
# the CUDA 13 toolkit already present. Idempotent: installed packages are kept.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

# Debian packages (bookworm versions).
apt_pins=(
  cmake=3.25.1-1
  ninja-build=1.11.1-2~deb12u1
  ccache=4.8+really4.7.5-1
  libgtest-dev=1.12.1-0.2
  nlohmann-json3-dev=3.11.2-2
  clang-14=1:14.0.6-12
  libclang-rt-14-dev=1:14.0.6-12
  python3-venv
  pkgconf=1.8.1-1
)
missing=()
for pin in "${apt_pins[@]}"; do
  pkg=${pin%%=*}
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pin")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
command -v nvcc >/dev/null || { echo "install_deps: the CUDA toolkit (nvcc) is required" >&2; exit 1; }

# Python tools, pinned, in the project's own virtual environment.
venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp="$venv/.requirements.sha"
want=$(sha256sum "$here/scripts/requirements-dev.txt" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip==26.3
  "$venv/bin/python" -m pip install -q -r "$here/scripts/requirements-dev.txt"
  echo "$want" > "$stamp"
fi
echo "install_deps: ok"
