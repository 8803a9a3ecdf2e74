#!/usr/bin/env bash
# Kinetograph set-up: idempotent; needs only python3 (3.10+) and, where venv is missing, apt-get.
# Creates .venv in the repository root and installs the app, its tests and benchmarks at the versions in
# constraints.txt.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "install.sh: $PYTHON not found; install Python 3.10 or newer first." >&2
    exit 1
fi

# Debian/Ubuntu split venv/ensurepip into a separate package; fetch it only when missing.
if ! "$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq python3-venv
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi

.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and alone (constraints.txt pins it): with it installed, nothing later pulls a second, CUDA-sized build.
# requirements.txt (what ComfyUI installs) never names torch; the app, tests and benchmarks add their own files.
.venv/bin/python -m pip install --quiet "$(grep -E '^torch==' constraints.txt)"
.venv/bin/python -m pip install --quiet -r requirements.txt -r requirements-app.txt -r requirements-dev.txt \
    -c constraints.txt
.venv/bin/python -c "import torch, diffusers, transformers, av, cv2; print('Kinetograph installed:', 'torch', torch.__version__, '| diffusers', diffusers.__version__)"

# The browser test (tests/test_studio_browser.py) drives Debian's chromium through chromium-driver (never a
# downloaded browser build). Installed only where apt-get exists and we are root or have sudo.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
        fi
        if [ "$SUDO" != "none" ]; then
            $SUDO apt-get update -qq
            $SUDO apt-get install -y -qq chromium chromium-driver
        else
            echo "install.sh: chromium missing and no root/sudo: the browser test will be skipped." >&2
        fi
    else
        echo "install.sh: chromium missing and no apt-get: the browser test will be skipped." >&2
    fi
fi
