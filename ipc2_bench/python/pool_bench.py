#!/usr/bin/env python3
"""Python's process pools on ipc2's trivial job (add two ints).

Run by `cargo run --release -p ipc2_bench` (or alone: `python3 pool_bench.py
[--quick]`). Prints one flat JSON object on stdout:

- ppe_submit_result_p50_us / _p99_us: ProcessPoolExecutor(2),
  `submit(add, a, b).result()` one at a time (round trip latency);
- ppe_submit_all_jobs_per_s: ProcessPoolExecutor(2), one `submit` per job,
  all submitted, then all results gathered;
- ppe_map_chunk1000_jobs_per_s: ProcessPoolExecutor(2).map(chunksize=1000);
- mp_pool_map_chunk1000_jobs_per_s: multiprocessing.Pool(2).map(chunksize=1000);
- python_version, start_method: context.

Each figure is the median of several repetitions after a warm-up; pools are
started (and warmed) before timing, so start-up is not counted. Every loop
is bounded by a count.
"""

import argparse
import itertools
import json
import multiprocessing
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

WORKERS = 2
CHUNK = 1000


def add(a, b):
    return a + b


def add_pair(pair):
    return pair[0] + pair[1]


def percentile(sorted_samples, p):
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, min(len(sorted_samples), -(-len(sorted_samples) * p // 100)))
    return sorted_samples[int(rank) - 1]


def submit_latency(executor, samples, warmup, reps):
    for i in range(warmup):
        executor.submit(add, i, 1).result()
    p50s, p99s = [], []
    for _ in range(reps):
        times = []
        for i in range(samples):
            start = time.perf_counter()
            result = executor.submit(add, i, 1).result()
            times.append((time.perf_counter() - start) * 1e6)
            assert result == i + 1
        times.sort()
        p50s.append(percentile(times, 50))
        p99s.append(percentile(times, 99))
    return statistics.median(p50s), statistics.median(p99s)


def submit_all(executor, jobs, reps):
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        futures = [executor.submit(add, i, 1) for i in range(jobs)]
        total = sum(f.result() for f in futures)
        rates.append(jobs / (time.perf_counter() - start))
        assert total == jobs * (jobs - 1) // 2 + jobs
    return statistics.median(rates)


def executor_map(executor, jobs, reps):
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        total = sum(executor.map(add, range(jobs), itertools.repeat(1, jobs), chunksize=CHUNK))
        rates.append(jobs / (time.perf_counter() - start))
        assert total == jobs * (jobs - 1) // 2 + jobs
    return statistics.median(rates)


def pool_map(pool, jobs, reps):
    pairs = [(i, 1) for i in range(jobs)]
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        total = sum(pool.map(add_pair, pairs, chunksize=CHUNK))
        rates.append(jobs / (time.perf_counter() - start))
        assert total == jobs * (jobs - 1) // 2 + jobs
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of ~20")
    quick = parser.parse_args().quick

    reps = 3 if quick else 5
    latency_samples = 300 if quick else 2000
    latency_warmup = 100 if quick else 500
    submit_jobs = 3000 if quick else 20000
    map_jobs = 50_000 if quick else 300_000

    out = {
        "python_version": platform.python_version(),
        "start_method": multiprocessing.get_start_method(),
    }
    with ProcessPoolExecutor(WORKERS) as executor:
        # Warm-up: start both workers and touch every path once.
        submit_all(executor, 200, 1)
        executor_map(executor, 2 * CHUNK, 1)
        p50, p99 = submit_latency(executor, latency_samples, latency_warmup, reps)
        out["ppe_submit_result_p50_us"] = p50
        out["ppe_submit_result_p99_us"] = p99
        out["ppe_submit_all_jobs_per_s"] = submit_all(executor, submit_jobs, reps)
        out["ppe_map_chunk1000_jobs_per_s"] = executor_map(executor, map_jobs, reps)
    with multiprocessing.Pool(WORKERS) as pool:
        pool_map(pool, 2 * CHUNK, 1)
        out["mp_pool_map_chunk1000_jobs_per_s"] = pool_map(pool, map_jobs, reps)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
