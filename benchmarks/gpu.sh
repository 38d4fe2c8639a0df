#!/usr/bin/env bash
# GPU checks of the fused kernels, in one go, on a machine with an NVIDIA GPU:
#   1. the CUDA kernel tests for real (tests/plugins/samplers/kernels/test_kernel_gpu.py),
#      plus the PTX compile test;
#   2. chain-steps per second of the cuda backend against a hand-written torch-CUDA
#      vectorised floor, for Langevin and HMC on the 2-D double well and the 8-component
#      mixture (default 1,000,000 chains x 1,000 steps; goal: >= 10x the floor);
#   3. the compiled torch path on the GPU (issue #14): MLP-energy Langevin and MALA, eager
#      against compiled with CUDA graphs, and a compiled pcd training step against eager;
#   4. the digits image recipe on the GPU: training time and the held-out report.
# Needs a CUDA build of torch and numba-cuda with the extra matching torch's CUDA major:
#   pip install "numba-cuda[cu12]>=0.30.4,<0.31"     (or [cu13] for CUDA 13 torch builds)
# Usage: benchmarks/gpu.sh [CHAINS] [STEPS]       e.g. benchmarks/gpu.sh 100000 200 (quick)
set -euo pipefail
cd "$(dirname "$0")/.."

CHAINS="${1:-1000000}"
STEPS="${2:-1000}"
PYTHON="${PYTHON:-python}"

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

echo "== CUDA kernel tests (real GPU) =="
"$PYTHON" -m pytest -q -p no:cacheprovider \
    tests/plugins/samplers/kernels/test_kernel_gpu.py \
    tests/plugins/samplers/kernels/test_kernel_ptx.py

echo "== cuda backend vs torch-CUDA floor: ${CHAINS} chains x ${STEPS} steps =="
CHAINS="$CHAINS" STEPS="$STEPS" "$PYTHON" - <<'PY'
import math
import os
import time

import torch

import ebmcore
from ebmcore_samplers.kernels import dispatch

B, S = int(os.environ["CHAINS"]), int(os.environ["STEPS"])
# GPU_SH_DEVICE=cpu with NUMBA_ENABLE_CUDASIM=1 smoke-tests this part without a GPU.
DEV = torch.device(os.environ.get("GPU_SH_DEVICE", "cuda"))
DT = torch.float32
EPS_L, EPS_H, LEAP = 0.01, 0.1, 10


def energies():
    well = ebmcore.create("energy", "double_well", dim=2).to(DEV)
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = torch.stack([4 * torch.cos(angles), 4 * torch.sin(angles)], 1)
    mix = ebmcore.create("energy", "gaussian_mixture", means=means, covs=0.3).to(DEV)
    return {"double_well": well, "mixture8": mix}


def grad_fn(name, energy):
    """Bare-torch analytic energy and gradient over (B, 2), as a floor would write them."""
    if name == "double_well":
        h, c = float(energy.barrier), float(energy.center)

        def eg(x):
            u = x[:, 0] / c
            w = u * u - 1
            g = x.clone()
            g[:, 0] = 4 * h * u * w / c
            return h * w * w + 0.5 * x[:, 1] ** 2, g
        return eg
    means, prec = energy.means.to(DT), energy.precision.to(DT)
    log_coef = energy.log_coef.to(DT)

    def eg(x):
        diff = x[:, None, :] - means
        pd = torch.einsum("bkd,kde->bke", diff, prec)
        a = log_coef - 0.5 * (diff * pd).sum(-1)
        lse = torch.logsumexp(a, 1)
        return -lse, (torch.exp(a - lse[:, None])[:, :, None] * pd).sum(1)
    return eg


def floor_langevin(eg, x0, gen):
    x, noise, sd = x0.clone(), torch.empty_like(x0), math.sqrt(2 * EPS_L)
    for _ in range(S):
        _, g = eg(x)
        x.add_(g, alpha=-EPS_L)
        x.add_(torch.randn(x.shape, generator=gen, out=noise), alpha=sd)
    return x


def floor_hmc(eg, x0, gen):
    x = x0.clone()
    e, g = eg(x)
    p, u = torch.empty_like(x), torch.empty(x.shape[0], device=DEV, dtype=DT)
    for _ in range(S):
        torch.randn(p.shape, generator=gen, out=p)
        h0 = 0.5 * (p * p).sum(1) + e
        y = x.clone()
        p.add_(g, alpha=-0.5 * EPS_H)
        for i in range(LEAP):
            y.add_(p, alpha=EPS_H)
            e1, g1 = eg(y)
            p.add_(g1, alpha=-(EPS_H if i < LEAP - 1 else 0.5 * EPS_H))
        acc = torch.rand(u.shape, generator=gen, out=u) < torch.exp(
            (h0 - 0.5 * (p * p).sum(1) - e1).clamp(max=0))
        x = torch.where(acc[:, None], y, x)
        g = torch.where(acc[:, None], g1, g)
        e = torch.where(acc, e1, e)
    return x


def fused_run(method, energy, x0, gen):
    params = ({"step_size": EPS_L} if method == "langevin" else
              {"step_size": EPS_H, "n_leapfrog": LEAP})
    return dispatch.run_fused(method, "cuda", energy.numba_face(), x0, n_steps=S, burn_in=0,
                              thin=1, params=params, generator=gen, return_trajectory=False)[0]


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, *args):
    sync()
    t = time.perf_counter()
    fn(*args)
    sync()
    return time.perf_counter() - t


rows = []
for name, energy in energies().items():
    eg = grad_fn(name, energy)
    x0 = torch.randn(B, 2, device=DEV, dtype=DT, generator=torch.Generator(DEV).manual_seed(0))
    for method, floor in (("langevin", floor_langevin), ("hmc", floor_hmc)):
        gen = torch.Generator(DEV).manual_seed(1)
        small = x0[: min(B, 1024)]
        fused_run(method, energy, small, gen)          # compile + warm up
        floor(eg, small, gen)
        t_floor = [timed(floor, eg, x0, gen) for _ in range(2)]
        t_fused = [timed(fused_run, method, energy, x0, gen) for _ in range(2)]
        cs = B * S
        rows.append((name, method, cs / min(t_floor), cs / min(t_fused),
                     min(t_floor) / min(t_fused)))
        print(f"  done {name} {method}", flush=True)

print(f"\n{'energy':<12} {'method':<9} {'floor steps/s':>15} {'cuda steps/s':>15} "
      f"{'speed-up':>9}  goal >= 10x")
for name, method, f, c, r in rows:
    print(f"{name:<12} {method:<9} {f:>15.3e} {c:>15.3e} {r:>8.1f}x  "
          f"{'ok' if r >= 10 else 'BELOW GOAL'}")
PY

echo "== compiled torch path on the GPU: MLP energy, eager vs compiled (CUDA graphs) =="
"$PYTHON" benchmarks/compiled.py --device cuda --chains 1000 100000 --repeats 3

echo "== compiled training step on the GPU (pcd, k=20, batch 256) =="
"$PYTHON" benchmarks/compiled_training.py --device cuda --steps 100 --repeats 2

echo "== digits image recipe on the GPU (needs scikit-learn) =="
if "$PYTHON" -c "import sklearn" 2>/dev/null; then
    out="$(mktemp -d)/digits"
    time "$PYTHON" -m ebmcore train --dataset digits --device cuda --out "$out" --quiet
else
    echo "scikit-learn missing: skipped"
fi
