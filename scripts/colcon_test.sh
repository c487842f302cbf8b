#!/usr/bin/env bash
# `colcon build && colcon test` in a workspace, as a ROS 2 user runs them: the package's CTest
# entry (CMakeLists.txt, ament_add_pytest_test) runs the tests that need the install tree
# (marked `installed`) against the tree colcon just installed; `make test` runs the rest.
#   bash scripts/colcon_test.sh [WORKSPACE]      (default: a fresh folder under /tmp)
#   ITERPRIME_FULL_SUITE=1 bash scripts/colcon_test.sh   runs the whole suite through CTest
# On a machine with ROS from apt: source /opt/ros/<distro>/setup.bash, then in your workspace
#   colcon build --packages-select iterprime_ros && colcon test --packages-select iterprime_ros
#   colcon test-result --verbose
# (prefix `colcon test` with ITERPRIME_FULL_SUITE=1 to run the whole suite on the robot)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
WS="${1:-$(mktemp -d /tmp/iterprime_ws.XXXXXX)}"
BUILD_TESTING=ON VENV="$VENV" bash "$ROOT/scripts/colcon_build.sh" "$WS" >/dev/null
cd "$WS"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export LD_LIBRARY_PATH="$VENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$VENV/bin:$PATH"
"$VENV/bin/colcon" test --packages-select iterprime_ros --event-handlers console_direct+ \
  --ctest-args --output-on-failure
# colcon test itself exits 0 when tests fail; test-result says so and sets the exit code.
"$VENV/bin/colcon" test-result --verbose --test-result-base build/iterprime_ros
