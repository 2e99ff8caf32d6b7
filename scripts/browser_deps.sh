#!/usr/bin/env bash
# Installs the browser the end-to-end test drives (tests/test_browser.py): Debian's chromium and
# chromium-driver, as /usr/bin/chromium and /usr/bin/chromedriver. Nothing else ever downloads a
# browser or a driver (Selenium is pointed at these two files and runs offline).
# Idempotent: does nothing when both files are there. Needs root (or sudo) for apt-get.
# Prints what it did on stderr only.
set -euo pipefail

log() { echo "[browser_deps] $*" >&2; }

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  log "chromium and chromedriver present: $(/usr/bin/chromium --version 2>/dev/null || echo '?'), $(/usr/bin/chromedriver --version 2>/dev/null | head -1 || echo '?')"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else log "not root and no sudo: cannot install chromium"; exit 1; fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "no apt-get here: install chromium and chromedriver at /usr/bin/chromium and /usr/bin/chromedriver by hand"
  exit 1
fi

log "installing Debian's chromium and chromium-driver (apt-get update first)"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >&2
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2

for f in /usr/bin/chromium /usr/bin/chromedriver; do
  if [ ! -x "$f" ]; then log "installed, but $f is missing"; exit 1; fi
done
log "installed: $(/usr/bin/chromium --version 2>/dev/null || echo '?'), $(/usr/bin/chromedriver --version 2>/dev/null | head -1 || echo '?')"
