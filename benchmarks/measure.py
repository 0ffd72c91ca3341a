"""Timing loops and their statistics. One place, so every backend and the baseline are timed alike."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Timing:
    """Per-call latencies of one (artifact, batch, mode) measurement."""

    batch: int
    calls: int
    total_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float

    @property
    def throughput(self) -> float:
        """Crops per second over the whole timed window (not 1/p50: slow outliers cost real time)."""
        return self.batch * self.calls / self.total_s if self.total_s > 0 else 0.0

    def to_dict(self) -> dict:
        d = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        d["throughput"] = round(self.throughput, 2)
        return d


def summarize(latencies_s, batch: int) -> Timing:
    t = np.asarray(latencies_s, np.float64)
    if t.size == 0:
        raise ValueError("no timed calls")
    ms = t * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return Timing(batch=batch, calls=int(t.size), total_s=float(t.sum()), p50_ms=float(p50), p90_ms=float(p90),
                  p99_ms=float(p99), mean_ms=float(ms.mean()), min_ms=float(ms.min()))


def time_calls(fn, batch: int, *, warmup: int = 3, iters: int | None = None, seconds: float | None = None,
               min_iters: int = 3, max_iters: int = 100_000) -> Timing:
    """Call fn() `warmup` times untimed, then `iters` times, or for about `seconds` (at least min_iters).

    Warm-up matters: the first calls of ORT/OpenVINO/torch allocate arenas, pick kernels and spin up
    thread pools, and would otherwise land in p99.
    """
    if iters is None and seconds is None:
        seconds = 2.0
    for _ in range(max(0, warmup)):
        fn()
    lat = []
    clock = time.perf_counter
    start = clock()
    while True:
        t0 = clock()
        fn()
        lat.append(clock() - t0)
        n = len(lat)
        if iters is not None:
            if n >= iters:
                break
        elif (n >= min_iters and clock() - start >= seconds) or n >= max_iters:
            break
    return summarize(lat, batch)


def time_interleaved(fns, batch: int, *, warmup: int = 3, iters: int | None = None, seconds: float | None = None,
                     rounds: int = 3, min_iters: int = 3) -> list[Timing]:
    """Time several callables in alternating rounds (A B C A B C ...) and return one Timing each.

    On a shared machine the load changes over seconds; timing the baseline and the artifacts in
    interleaved slices exposes them to the same noise, so their ratio stays meaningful even when
    the absolute numbers do not. Each callable gets `iters` calls (or about `seconds`) in total.
    """
    if iters is None and seconds is None:
        seconds = 2.0
    rounds = max(1, rounds if iters is None else min(rounds, iters))
    for fn in fns:
        for _ in range(max(0, warmup)):
            fn()
    lat = [[] for _ in fns]
    clock = time.perf_counter
    for r in range(rounds):
        for i, fn in enumerate(fns):
            if iters is not None:
                n_round = iters // rounds + (1 if r < iters % rounds else 0)
                for _ in range(n_round):
                    t0 = clock()
                    fn()
                    lat[i].append(clock() - t0)
            else:
                budget, start = seconds / rounds, clock()
                want = -(-min_iters // rounds)  # at least min_iters over all rounds
                done = 0
                while done < want or clock() - start < budget:
                    t0 = clock()
                    fn()
                    lat[i].append(clock() - t0)
                    done += 1
    return [summarize(t, batch) for t in lat]
