"""Interleaved timing shared by the benchmarks: machines here are noisy, so every function of a
comparison is timed in the same rounds and ratios are taken between them."""

from __future__ import annotations

import statistics
import time

import jax


def timed(fns: dict, repeats: int, settle: bool = True) -> tuple[dict, dict, dict, dict]:
    """First-call seconds, then ``repeats`` rounds calling every function in turn
    (interleaved, so a busy machine slows all alike). With ``settle`` each timed call follows
    an untimed call of the same function: the first call after a program that used much memory
    (integrated gradients) runs up to 1.7× slower. Returns first-call wall seconds and,
    per function, the median wall seconds, the min wall seconds and the median CPU seconds
    of this process (all threads) — the CPU time is what other load on a shared machine
    disturbs least."""
    first, wall, cpu = {}, {name: [] for name in fns}, {name: [] for name in fns}
    for name, fn in fns.items():
        start = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - start
    for _ in range(repeats):
        for name, fn in fns.items():
            if settle:
                jax.block_until_ready(fn())
            start, start_cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn())
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    median = {name: statistics.median(v) for name, v in wall.items()}
    return (first, median, {name: min(v) for name, v in wall.items()},
            {name: statistics.median(v) for name, v in cpu.items()})
