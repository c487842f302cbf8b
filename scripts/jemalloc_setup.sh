#!/usr/bin/env bash
# Offer jemalloc (Debian/Ubuntu package libjemalloc2) for the node and the CLI
# (iterprime_ros/jemalloc.py preloads it with retained memory; docs/performance.md).
# Called by scripts/setup.sh; never fails the setup.
#   ITERPRIME_INSTALL_JEMALLOC=0   do not install it (default 1: install when absent)
#   JEMALLOC_PATHS="a b"           where to look for libjemalloc.so.2 (tests)
set -uo pipefail
say() { printf '[setup] %s\n' "$*"; }
paths="${JEMALLOC_PATHS:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/aarch64-linux-gnu/libjemalloc.so.2 /usr/lib64/libjemalloc.so.2 /usr/local/lib/libjemalloc.so.2}"
find_lib() { for p in $paths; do [ -f "$p" ] && { echo "$p"; return 0; }; done; return 1; }

if lib=$(find_lib); then
  say "jemalloc: $lib (used by the node and the CLI; ITERPRIME_JEMALLOC=off to switch it off)"
  exit 0
fi
if [ "${ITERPRIME_INSTALL_JEMALLOC:-1}" = "0" ]; then
  say "jemalloc: not installed, skipped (ITERPRIME_INSTALL_JEMALLOC=0); the default allocator is used"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  say "jemalloc: not installed and no apt-get here; install jemalloc yourself for faster new frames (optional)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    say "jemalloc: not installed; run 'sudo apt-get install libjemalloc2' for faster new frames (optional)"
    exit 0
  fi
fi
say "jemalloc: installing libjemalloc2 (ITERPRIME_INSTALL_JEMALLOC=0 skips this)"
if $SUDO apt-get install -y libjemalloc2 >/dev/null 2>&1 && find_lib >/dev/null; then
  say "jemalloc: installed $(find_lib)"
else
  say "jemalloc: apt-get install libjemalloc2 failed; continuing with the default allocator"
fi
exit 0
