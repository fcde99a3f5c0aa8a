#!/usr/bin/env bash
# Install the system packages the test suite needs beyond Python: Debian's chromium, used
# headless by tests/test_report_browser.py to open the HTML report. Idempotent: does nothing
# when chromium is already on PATH. Runs as root (CI and our machines); otherwise via sudo.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
command -v chromium >/dev/null
