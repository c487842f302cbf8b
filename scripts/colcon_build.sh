#!/usr/bin/env bash
# Build the package with colcon as a ROS 2 workspace would, against the virtual
# environment's ROS wheels (on a machine with ROS from apt: source /opt/ros/<distro>/setup.bash
# and run plain `colcon build` in your workspace instead).
#   bash scripts/colcon_build.sh [WORKSPACE]     (default: a fresh folder under /tmp)
#   BUILD_TESTING=OFF skips registering the test suite with CTest (scripts/colcon_test.sh runs it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
WS="${1:-$(mktemp -d /tmp/iterprime_ws.XXXXXX)}"
mkdir -p "$WS/src/iterprime_ros"
# The workspace gets the package's files, not the virtual environment or build outputs.
(cd "$ROOT" && tar --exclude=./.venv --exclude=./.git --exclude=./build --exclude=./install \
   --exclude=./log --exclude=./out -cf - .) | tar -xf - -C "$WS/src/iterprime_ros"
cd "$WS"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export LD_LIBRARY_PATH="$VENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$VENV/bin/colcon" build --event-handlers console_direct- \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING="${BUILD_TESTING:-ON}"
echo "$WS"
