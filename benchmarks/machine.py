"""The machine: its BLAS (threadpoolctl), its threads, and its measured square-GEMM peak."""

from __future__ import annotations

import os
import platform
import time

import numpy as np


def blas_info() -> dict[str, object]:
    """numpy's BLAS as threadpoolctl sees it: library, version, kernel, threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"library": "unknown (pip install threadpoolctl)", "threads": os.cpu_count() or 1}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return {
                "library": pool.get("internal_api"),
                "version": pool.get("version"),
                "kernel": pool.get("architecture"),
                "threads": int(pool.get("num_threads") or 1),
                "file": os.path.basename(str(pool.get("filepath"))),
            }
    return {"library": "none found", "threads": 1}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gemm_peak(dtype: str = "float32", sizes: tuple[int, ...] = (1024, 2048),
              seconds: float = 1.0) -> dict[str, float]:
    """The best GFLOP/s of numpy's square matrix product C = A B (2n³ FLOPs) over ``sizes``.

    Each size is repeated for about ``seconds``; the fastest repetition counts (the peak
    the machine reaches, not a typical one).
    """
    best, best_n = 0.0, 0
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.random((n, n), dtype=np.float64).astype(dtype)
        b = rng.random((n, n), dtype=np.float64).astype(dtype)
        c = np.empty((n, n), dtype=dtype)
        np.matmul(a, b, out=c)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            np.matmul(a, b, out=c)
            rate = 2 * n**3 / (time.perf_counter() - start) / 1e9
            if rate > best:
                best, best_n = rate, n
    return {"gflops": best, "n": best_n}
