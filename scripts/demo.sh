#!/usr/bin/env bash
# The README's main job: replay the bundled sample through the pipeline (`make demo` calls this
# after scripts/setup.sh). Real weights (`iterprime download`) -> data/sample.mcap; none -> the
# synthetic world, announced loudly. Results and overlay PNGs land in out/demo/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
cd "$ROOT"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"   # use what is installed; never stall on a download
exec "$VENV/bin/iterprime" demo --out "${DEMO_OUT:-out/demo}" "$@"
