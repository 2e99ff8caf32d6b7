"""Runs a maintainer's module of the pack as a script: the benchmarks and the generators.

    python scripts/dev.py bench.bench_train --device cuda
    python scripts/dev.py tools.make_workflows
"""

import runpy
import sys

import pack

if __name__ == "__main__":
    if len(sys.argv) < 2 or not sys.argv[1].startswith(("bench.", "tools.")):
        sys.exit("usage: python scripts/dev.py bench.<benchmark> | tools.<generator> [options]")
    name = sys.argv[1]
    sys.argv = [name, *sys.argv[2:]]
    runpy.run_module(f"{pack.load().__name__}.{name}", run_name="__main__", alter_sys=True)
