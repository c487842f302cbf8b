#!/usr/bin/env bash
# Build (or refresh) the project's virtual environment: ROS 2 Kilted wheels, torch,
# models' libraries, the iterprime_ros messages built from msg/ and srv/, and the
# package itself (editable). Idempotent: a second run only checks and exits quickly.
#
#   bash scripts/setup.sh            # creates ./.venv
#   VENV=/path/to/venv bash scripts/setup.sh
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 bash scripts/setup.sh   # pick a torch build
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
say() { printf '[setup] %s\n' "$*"; }

command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null || {
  echo "[setup] error: Python 3.11 is required (the ROS 2 Kilted wheels are built for cp311); set PYTHON=..." >&2
  exit 1
}

# 1. virtual environment
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip wheel setuptools
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -q --disable-pip-version-check)

# 2. torch first, pinned, so nothing later pulls a different (multi-GB) build
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  say "installing torch==$TORCH_VERSION${TORCH_INDEX_URL:+ from $TORCH_INDEX_URL}"
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${PIP[@]}" "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
  else
    "${PIP[@]}" "torch==$TORCH_VERSION"
  fi
fi
gpu="no"; command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && gpu="yes"
build=$("$PY" -c "import torch; print('CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU')")
say "torch $("$PY" -c 'import torch; print(torch.__version__)') ($build build); NVIDIA GPU present: $gpu"
if [ "$gpu" = "yes" ] && [ "$build" = "CPU" ]; then
  # PyPI's Linux torch is a CUDA build; a local mirror may only hold the CPU one: try PyTorch's CUDA index.
  cuda_index="${TORCH_CUDA_INDEX_URL:-https://download.pytorch.org/whl/cu128}"
  say "a GPU is present but torch is a CPU build: trying the CUDA build from $cuda_index"
  if "${PIP[@]}" --force-reinstall --no-deps "torch==$TORCH_VERSION" --index-url "$cuda_index"; then
    build=$("$PY" -c "import torch; print('CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU')")
  fi
  say "torch build now: $build"
  if [ "$build" = "CPU" ]; then say "note: still a CPU build; set TORCH_INDEX_URL to a reachable CUDA index and rerun"; fi
fi

# 3. everything else
say "installing requirements.txt"
"${PIP[@]}" -r "$ROOT/requirements.txt"

# 4. the ROS wheels' CMake files name two include folders from their build machine
NEED_INC=/opt/python/cp311-cp311/include/python3.11
NEED_NP=/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
PYINC=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NPINC=$("$PY" -c "import numpy; print(numpy.get_include())")
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
for pair in "$NEED_INC|$PYINC" "$NEED_NP|$NPINC"; do
  link="${pair%%|*}"; target="${pair##*|}"
  if [ "$(readlink -f "$link" 2>/dev/null)" != "$(readlink -f "$target")" ]; then
    say "linking $link -> $target"
    $SUDO mkdir -p "$(dirname "$link")"
    $SUDO ln -sfn "$target" "$link"
  fi
done

# 5. messages and services, built with the wheels' ament_cmake into the environment
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
STAMP="$VENV/.iterprime_interfaces.sha"
want=$(cat "$ROOT"/msg/*.msg "$ROOT"/srv/*.srv "$ROOT"/action/*.action "$ROOT/CMakeLists.txt" "$ROOT/package.xml" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ] || [ ! -d "$SITE/iterprime_ros/msg" ]; then
  say "building msg/ and srv/ into $VENV"
  BUILD="$VENV/.build/iterprime_ros"
  rm -rf "$BUILD"; mkdir -p "$BUILD"
  # The wheels' bootstrapper sets LD_LIBRARY_PATH by re-executing Python; cmake's
  # generator steps need the same paths.
  export LD_LIBRARY_PATH="$VENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  (
    cd "$BUILD"
    cmake "$ROOT" -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DPython3_EXECUTABLE="$PY" -DITERPRIME_INSTALL_PYTHON=OFF -DBUILD_TESTING=OFF >cmake.log 2>&1 \
      && make -j"$(nproc)" >make.log 2>&1 && make install >install.log 2>&1
  ) || { echo "[setup] error: building the interfaces failed; logs in $BUILD" >&2; tail -n 30 "$BUILD"/*.log >&2; exit 1; }
  # rosidl installs an empty iterprime_ros/__init__.py and egg-info; the editable
  # install below provides the real package, which extends its __path__ to this folder.
  rm -f "$SITE/iterprime_ros/__init__.py"
  rm -rf "$SITE"/iterprime_ros-*.egg-info
  echo "$want" >"$STAMP"
fi

# 6. the package itself, editable. The source folder also goes on sys.path through a
# .pth file, so the regular package in the checkout is found before the msg/srv-only
# folder in site-packages, and its __init__ extends __path__ to that folder.
# Installed again when setup.py changes: its console scripts (entry points) live in the venv.
echo "$ROOT" >"$SITE/iterprime_ros_source.pth"
PKG_STAMP="$VENV/.iterprime_package.sha"
pkg_want=$(sha256sum "$ROOT/setup.py" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/iterprime" ] || ! "$PY" -m pip show -q iterprime_ros >/dev/null 2>&1 \
   || [ "$(cat "$PKG_STAMP" 2>/dev/null)" != "$pkg_want" ]; then
  say "installing iterprime_ros (editable)"
  "${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT" >"$VENV/.editable_install.log" 2>&1 \
    || { cat "$VENV/.editable_install.log" >&2; exit 1; }
  echo "$pkg_want" >"$PKG_STAMP"
fi

# 7. jemalloc for the node and the CLI (optional; ITERPRIME_INSTALL_JEMALLOC=0 skips installing)
bash "$ROOT/scripts/jemalloc_setup.sh"

"$PY" - <<'EOF'
import rclpy, spacy, torch, transformers
from iterprime_ros.msg import Segmentation
from iterprime_ros.srv import Segment
print(f"[setup] ok: rclpy, iterprime_ros.msg/srv, torch {torch.__version__}, transformers {transformers.__version__}, spacy {spacy.__version__}")
EOF
