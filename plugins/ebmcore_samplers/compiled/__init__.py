"""The ``compiled`` backend: the built-in torch samplers traced by ``torch.compile``.

Modules: :mod:`.steps` (the steps as pure functions), :mod:`.passes` (CPU graph passes),
:mod:`.backend` (plans, draws, reasons, the auto rule, the cache of blocks) and :mod:`.loop`
(:class:`CompiledSampler`, what a sampler declares; the loop over blocks; and
:class:`CompiledBackend`, the strategy object the plugin registers).

On the eager torch backend every step of a neural energy is dozens of small kernel launches
from Python. Here a *block* of steps (``compile_block``, 10 by default) is one function that
``torch.compile`` traces whole (``fullgraph=True``): the steps unrolled, the gradient from
the energy's closed-form ``energy_and_grad`` when it has one and otherwise from
``torch.func.grad`` of ``energy(x).sum()`` (dynamo traces that; ``torch.autograd.grad``
graph-breaks). On CUDA the block is compiled with ``mode="reduce-overhead"`` (CUDA graphs),
which removes the launch cost that dominates there.

What stays eager, and why:

- **Randomness.** Each block's noise (and MALA's and HMC's uniforms) is drawn from the
  user's generator before the block runs, so the same seed gives the same bits run after
  run. The bits differ from the eager backend's (the draws come in blocks), the law does not.
- **Schedules.** Step sizes and noise scales are evaluated per block and passed as tensors
  of per-step values, so changing them never recompiles.
- **Burn-in adaptation.** A sampler that adapts during burn-in (MALA and HMC step sizes, HMC
  mass) runs its burn-in on the torch backend and the kept steps compiled, from the adapted
  state (``diagnostics["compiled_from_step"]``).
- **The loop around the blocks**: thinning, trajectory recording, ``on_keep``, diagnostics.
  A block that records returns the positions of its steps; the loop keeps what
  :meth:`ebmcore.Sampler.sample` would keep, so ``trajectory``, ``trace_chains``, ``thin``,
  ``burn_in`` and ``on_keep`` mean what they mean on the torch backend (``on_keep`` is called
  after each block for the kept steps in it). The energy trace holds every kept step.

Composite samplers run their parts' steps inside the block: parallel tempering wraps the
base sampler's compiled step with its swap rounds (:func:`.steps.tempering_step`), its plan
holding each chain's replicas as consecutive rows (``CompiledPlan.replicas``), tallying the
swaps in its own carry (``counted``) and mapping its state in and out (``carry``, ``finish``).

A run whose length is not a multiple of the block masks the spare steps of its last block
(computed, then discarded), so one graph serves every run length.

On a CPU two more things make the blocks faster (``docs/performance.md``): large batches run
in equal chunks of at most ``CPU_CHUNK`` chains that stay in the cache (every chunk reuses
the graph and its slice of the block's draws), and a post-grad graph pass turns the skinny
matrix products that BLAS handles badly into pointwise work inductor fuses
(:mod:`ebmcore_samplers.compiled.passes`; if inductor fails with it, the block compiles
without it).

Compiled blocks are cached for the process, keyed by sampler kind and structure, energy
type, chains' shape, dtype, device, block size and recording; each key gets its own code
object, hence its own dynamo cache and recompile limit. The energy is an *argument* of the
compiled function, never a constant of it: dynamo lifts an ``nn.Module``'s parameters and
buffers to graph inputs, so a model trained between calls is sampled with its current
weights, and another instance of the same type reuses the graph without recompiling.
"""

from .backend import (
    AUTO_CPU_CHAIN_STEPS,
    AUTO_CUDA_STEPS,
    BLOCK_GRADS,
    CPU_CHUNK,
    CompiledPlan,
    Draws,
    auto_picks_compiled,
    chunk_size,
    clear_compiled_blocks,
    closed_form,
    compiled_blocks,
    compiled_reason,
    compiler_reason,
)
from .loop import (
    CompiledBackend,
    CompiledBackendMixin,
    CompiledSampler,
    run_compiled,
    state_carry,
    store_carry,
)
from .steps import (
    hmc_step,
    langevin_step,
    mala_step,
    meads_step,
    tempering_step,
    underdamped_step,
)

__all__ = [
    "AUTO_CPU_CHAIN_STEPS", "AUTO_CUDA_STEPS", "BLOCK_GRADS", "CPU_CHUNK",
    "CompiledBackend", "CompiledBackendMixin", "CompiledPlan", "CompiledSampler", "Draws",
    "auto_picks_compiled", "chunk_size",
    "clear_compiled_blocks", "closed_form", "compiled_blocks", "compiled_reason",
    "compiler_reason", "hmc_step", "langevin_step", "mala_step", "meads_step", "run_compiled",
    "state_carry", "store_carry", "tempering_step", "underdamped_step",
]
