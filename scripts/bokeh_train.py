"""Headless training of a bokeh adapter (the code is runner/train_command.py).

    python scripts/bokeh_train.py --folder my_photos --unet flux1-kontext-dev.safetensors ...
    python scripts/bokeh_train.py --check --folder my_photos   # tiny random models: checks your data
"""

import sys

import pack

if __name__ == "__main__":
    sys.exit(pack.run("runner.train_command"))
