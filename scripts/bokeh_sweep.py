"""Headless blur sweep (the code is runner/sweep_command.py; `bash scripts/sweep.sh` sets up and runs it).

    python scripts/bokeh_sweep.py --prompt "a cat on a sofa" --targets "0, 8, 16, 28"
    python scripts/bokeh_sweep.py --check          # tiny random models: proves the install
"""

import sys

import pack

if __name__ == "__main__":
    sys.exit(pack.run("runner.sweep_command"))
