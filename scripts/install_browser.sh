#!/usr/bin/env bash
# Install Debian's chromium for the HTML gallery's browser test (tests/test_html.py).
# Without it those tests are skipped with a message; CI (.ci/run) runs this first.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    echo "chromium is installed: $(chromium --version 2>/dev/null)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium
echo "chromium installed: $(chromium --version 2>/dev/null)"
