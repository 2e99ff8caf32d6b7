"""Prepares a ComfyUI base folder for trying the sweep over servers without FLUX (the code is
fixtures/tiny_server.py).

    python scripts/tiny_server.py /tmp/bokeh_server_a --port 8188
"""

import sys

import pack

if __name__ == "__main__":
    sys.exit(pack.run("fixtures.tiny_server"))
