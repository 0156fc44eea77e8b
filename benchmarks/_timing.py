"""Interleaved timing shared by the benchmarks: machines here are noisy, so every function of a
comparison is timed in the same rounds and ratios are taken round by round."""

from __future__ import annotations

import statistics
import time
from typing import NamedTuple

import jax


class Timings(NamedTuple):
    """What :func:`timed` measured, per function name: first-call wall seconds, the median and
    the fastest steady-state wall seconds, the median CPU seconds of this process (all threads:
    what other load on a shared machine disturbs least) and the wall seconds of every round."""

    first: dict
    median: dict
    fastest: dict
    cpu: dict
    rounds: dict

    def ratio(self, num: str, den: str) -> tuple[float, float, float]:
        """``time(num) / time(den)`` taken within each round: the median and the quartiles over
        the rounds. Pairing the calls of one round cancels the drift of a shared machine's
        speed, which a ratio of two medians keeps."""
        per_round = sorted(a / b for a, b in zip(self.rounds[num], self.rounds[den]))
        if len(per_round) < 2:
            return per_round[0], per_round[0], per_round[0]
        q1, q2, q3 = statistics.quantiles(per_round, n=4, method="inclusive")
        return q2, q1, q3


def timed(fns: dict, repeats: int, settle: bool = True) -> Timings:
    """First calls, then ``repeats`` rounds calling every function in turn (interleaved, so a
    busy machine slows all alike; every other round in reverse order, so that no function
    always follows the same one). With ``settle`` each timed call follows an untimed call of
    the same function: the first call after a program that used much memory (integrated
    gradients) runs up to 1.7× slower."""
    first, wall, cpu = {}, {name: [] for name in fns}, {name: [] for name in fns}
    for name, fn in fns.items():
        start = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - start
    order = list(fns)
    for r in range(repeats):
        for name in (order if r % 2 == 0 else order[::-1]):
            fn = fns[name]
            if settle:
                jax.block_until_ready(fn())
            start, start_cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn())
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return Timings(first, {name: statistics.median(v) for name, v in wall.items()},
                   {name: min(v) for name, v in wall.items()},
                   {name: statistics.median(v) for name, v in cpu.items()}, wall)
