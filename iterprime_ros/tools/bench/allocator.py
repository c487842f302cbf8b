"""What the allocator setting saves on frame-sized temporaries: system time and page faults.

Why: jemalloc can only be preloaded by re-executing a process; where that is impossible (the
Python API inside another program) ``retain_freed_memory`` sets glibc's mallopt instead. This
probe puts a figure on each: 245 MB of proposal-mask tensors and five 64-channel convolutions at
240x320 per round, as a new frame does, then CPU times and minor page faults over the rounds.

    python -m iterprime_ros.tools.bench.allocator --mode glibc      # the C library's defaults
    python -m iterprime_ros.tools.bench.allocator --mode mallopt    # retain_freed_memory()
    python -m iterprime_ros.jemalloc -- python -m iterprime_ros.tools.bench.allocator --mode as-is
"""

from __future__ import annotations

import argparse
import resource
import sys
import time


def probe(rounds: int, threads: int) -> dict[str, float]:
    import torch

    torch.set_num_threads(threads)
    x = torch.randn(1, 64, 240, 320)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).requires_grad_(False)

    def step() -> float:
        masks = torch.empty(200, 480, 640).uniform_()  # like 200 proposal masks
        binary = (masks > 0.5).float() * 2
        y = conv(x)
        for _ in range(4):
            y = conv(torch.relu(y))
        return float(binary.sum() + y.sum())

    step()
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(rounds):
        step()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_s": time.perf_counter() - t0,
        "user_s": after.ru_utime - before.ru_utime,
        "system_s": after.ru_stime - before.ru_stime,
        "minor_faults": after.ru_minflt - before.ru_minflt,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("glibc", "mallopt", "as-is"), default="as-is")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    from ...jemalloc import jemalloc_mapped, retain_freed_memory

    how = "jemalloc (preloaded)" if jemalloc_mapped() else "glibc defaults"
    if args.mode == "mallopt":
        how = retain_freed_memory()
    r = probe(args.rounds, args.threads)
    print(
        f"{how}: {args.rounds} rounds, wall {r['wall_s']:.2f} s, user {r['user_s']:.2f} s, "
        f"system {r['system_s']:.2f} s, minor page faults {r['minor_faults']:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
