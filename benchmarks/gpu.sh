#!/usr/bin/env bash
# GPU checks of the fused kernels, in one go, on a machine with an NVIDIA GPU (about 4 minutes
# on an H200 at the default sizes):
#   1. the GPU tests for real (SECTIONS word: tests): the CUDA kernels
#      (tests/plugins/samplers/kernels/test_kernel_gpu.py) and the PTX compile test, every
#      CLI command on cuda (tests/core/test_cli_devices.py, a million-chain sample among
#      them), the diagnostics and the compiled path;
#   2. (table) benchmarks/gpu_table.py: one table of chain-steps per second (float32, best of 2 after
#      a warm-up, one process per library) for Langevin, MALA and HMC on the 2-D double
#      well, the 8-component mixture and a 100-D dense Gaussian (up to 1,000,000 chains):
#      a hand-written torch-CUDA floor, ebmcore's torch / cuda / auto backends, TorchEBM and
#      BlackJAX, then cuda/floor (goal >= 10x on 2-D) and cuda/BlackJAX (goal >= 2x);
#      about 2 minutes; the rows also go to $GPU_TABLE_JSON (default: a temporary file);
#   3. (sweep) the auto sweep on the GPU (benchmarks/kernels.py --sweep-only --device cuda): torch
#      against cuda on every case of the grid, and how far auto's pick is from the faster;
#   4. (compiled) the compiled torch path on the GPU (issue #14): MLP-energy Langevin and MALA, eager
#      against compiled with CUDA graphs, and a compiled pcd training step against eager;
#   5. (demo) ebmcore demo --device cuda, eager and with train.compile=true: training time
#      and the test NLL gap (issue #14: >= 5x faster at gap <= 0.15);
#   6. (digits) the digits image recipe on the GPU: training time and the held-out report.
# Needs a CUDA build of torch and numba-cuda with the extra matching torch's CUDA major:
#   pip install "numba-cuda[cu12]>=0.30.4,<0.31"     (or [cu13] for CUDA 13 torch builds)
# and numpy<2.5 (numba-cuda 0.30.4 cannot compile under NumPy 2.5).
#
# The peers' columns (n/a when missing, never an error): TorchEBM 0.8.9 and BlackJAX 1.7.1
# (a jax with GPU support, e.g. jax[cuda12], must already be there). On an image that has
# torch, jax, numba-cuda and numpy but no network, carry these pure-Python wheels (the
# other dependencies of blackjax 1.7.1, namely jax, jaxlib, numpy, scipy and
# typing-extensions, come with jax and torch; it needs no fastprogress):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 -d wheels \
#       blackjax==1.7.1 optax==0.2.8 absl-py==2.5.1 torchebm==0.8.9
# and on the GPU machine:  pip install --no-deps --no-index wheels/*.whl
# (or pip install --target DIR ... and GPU_TABLE_BLACKJAX_PATH=DIR: the BlackJAX process
# then puts DIR in front of its PYTHONPATH, leaving the main environment alone).
#
# Usage: [SECTIONS="tests table ..."] benchmarks/gpu.sh [SCALE] [STEPS_SCALE]    e.g. benchmarks/gpu.sh 0.1 0.2 (quick)
#   SCALE multiplies the table's chain counts, STEPS_SCALE its step counts (default 1 1).
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE="${1:-1}"
STEPS_SCALE="${2:-1}"
PYTHON="${PYTHON:-python}"
TABLE_JSON="${GPU_TABLE_JSON:-$(mktemp -d)/gpu_table.json}"
# Which sections run (all by default; e.g. SECTIONS="tests demo" benchmarks/gpu.sh to fit a
# short device lease): tests table sweep compiled demo digits.
SECTIONS=" ${SECTIONS:-tests table sweep compiled demo digits} "
section_start=$SECONDS

want() { [[ "$SECTIONS" == *" $1 "* ]]; }

# Print the time the section took and the total so far (the whole script aims at ~4 min).
elapsed() {
    echo "(section $((SECONDS - section_start)) s, ${SECONDS} s in all)"
    section_start=$SECONDS
}

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu.sh: nvidia-smi not found: this script needs an NVIDIA GPU and driver" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
unset NUMBA_ENABLE_CUDASIM

"$PYTHON" - <<'PY'
import sys
import torch
from numba import cuda
problems = []
if not torch.cuda.is_available():
    problems.append(f"torch {torch.__version__} sees no GPU (a CPU build of torch?)")
if not cuda.is_available():
    problems.append("numba.cuda sees no GPU (install numba-cuda[cu12] or [cu13])")
if problems:
    sys.exit("gpu.sh: " + "; ".join(problems))
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), numba.cuda device "
      f"{cuda.get_current_device().name}")
PY

if want tests; then
echo "== GPU tests: CUDA kernels, every CLI command on cuda, diagnostics, compiled path =="
"$PYTHON" -m pytest -q -p no:cacheprovider \
    tests/plugins/samplers/kernels/test_kernel_gpu.py \
    tests/plugins/samplers/kernels/test_kernel_ptx.py \
    tests/core/test_cli_devices.py tests/core/test_diagnostics.py \
    tests/plugins/samplers/test_compiled.py
elapsed
fi

if want table; then
echo "== side-by-side table: ebmcore (torch, cuda, auto) vs torch-CUDA floor, TorchEBM, BlackJAX =="
"$PYTHON" benchmarks/gpu_table.py --device cuda --scale "$SCALE" --steps-scale "$STEPS_SCALE" \
    --timeout "${GPU_TABLE_TIMEOUT:-180}" --json "$TABLE_JSON"
elapsed
fi

if want sweep; then
echo "== auto on the GPU: torch vs cuda over the sweep grid (float32; refits CUDA_DENSE_COST) =="
"$PYTHON" benchmarks/kernels.py --sweep-only --device cuda --dtype float32 --rounds 2 \
    --chains 1000 100000
elapsed
fi

if want compiled; then
echo "== compiled torch path on the GPU: MLP energy, eager vs compiled (CUDA graphs) =="
"$PYTHON" benchmarks/compiled.py --device cuda --chains 1000 100000 --repeats 3

echo "== compiled training step on the GPU (pcd, k=20, batch 256) =="
"$PYTHON" benchmarks/compiled_training.py --device cuda --steps 100 --repeats 2
elapsed
fi

if want demo; then
echo "== ebmcore demo on the GPU: eager, then train.compile=true (issue #14: >= 5x faster) =="
for extra in "" "--set train.compile=true"; do
    out="$(mktemp -d)/demo"
    # shellcheck disable=SC2086  # $extra is meant to split into two words
    time "$PYTHON" -m ebmcore demo --device cuda --out "$out" --quiet $extra
    "$PYTHON" -c "import json, sys; m = json.load(open(sys.argv[1])); \
print(f\"training {m['timings']['train_seconds']:.1f} s, test NLL gap \
{m['evaluation']['nll_gap']:.3f} (goal <= 0.15)\")" "$out/metrics.json"
done
elapsed
fi

if want digits; then
echo "== digits image recipe on the GPU (needs scikit-learn) =="
if "$PYTHON" -c "import sklearn" 2>/dev/null; then
    out="$(mktemp -d)/digits"
    time "$PYTHON" -m ebmcore train --dataset digits --device cuda --out "$out" --quiet
else
    echo "scikit-learn missing: skipped"
fi
elapsed
fi
