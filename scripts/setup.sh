#!/usr/bin/env bash
# Set up a development environment from scratch: .venv with the CPU build of torch, ood-core,
# every first-party plugin, the ONNX exporter, the torch-free runtime and the oodx CLI (all
# editable), and the test tools.
# Usage: bash scripts/setup.sh   (re-running it is safe and quick)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install --quiet --upgrade pip "setuptools>=77" wheel
# The CPU build: on these machines torch==2.13.0 resolves to a local CPU wheel. A bare
# `pip install torch` would pull several GB of CUDA packages.
$PIP install --quiet "torch==${OODX_TORCH_VERSION:-2.13.0}"
editables=(-e ".[test]")
for dir in runtime/ plugins/*/ exporters/*/ cli/; do
  [ -f "$dir/pyproject.toml" ] || continue
  extras=""
  [ "$dir" = "runtime/" ] && extras="[cpu,images]"
  [ "$dir" = "cli/" ] && extras="[train,demo]"
  [ "$dir" = "exporters/onnx/" ] && extras="[cpu]"
  editables+=(-e "${dir%/}$extras")
done
$PIP install --quiet "${editables[@]}"
# pytorch-ood 0.4.0 is the reference of the differential tests (test-only, without torchvision).
$PIP install --quiet --no-deps "pytorch-ood==0.4.0"
echo "oodx is set up in .venv: try '.venv/bin/oodx demo' and '.venv/bin/python -m pytest'"
