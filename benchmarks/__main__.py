"""``python -m benchmarks [--quick]``: see benchmarks/__init__.py.

OpenBLAS reads OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE when numpy loads it; where the
machine sets them (an old OpenBLAS needed them on some processors) they slow a current
numpy.  This command removes both for its own process only, re-executing itself before
numpy is imported, and reports which kernel then runs (threadpoolctl).  Tests and CI
never touch them.
"""

from __future__ import annotations

import os
import sys

UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MARK = "BPTT_BENCHMARKS_UNSET"


def main() -> None:
    present = [name for name in UNSET if name in os.environ]
    if present and MARK not in os.environ:
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env[MARK] = ",".join(f"{name}={os.environ[name]}" for name in present)
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *sys.argv[1:]], env)
    from benchmarks.run import main as run_main

    run_main(sys.argv[1:], unset=os.environ.get(MARK, ""))


if __name__ == "__main__":
    main()
