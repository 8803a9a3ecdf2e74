#!/usr/bin/env bash
# Kinetograph set-up: idempotent; needs only python3 (3.10+) and, where venv is missing, apt-get.
# Creates .venv in the repository root and installs the pinned requirements into it.
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
# torch first and alone: with torch==2.13.0 already installed, nothing later pulls a second build.
.venv/bin/python -m pip install --quiet "$(grep -E '^torch==' requirements.txt)"
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -c "import torch, diffusers, transformers, av, cv2; print('Kinetograph installed:', 'torch', torch.__version__, '| diffusers', diffusers.__version__)"
