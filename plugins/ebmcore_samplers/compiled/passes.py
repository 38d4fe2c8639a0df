"""Post-grad graph passes that inductor runs on the compiled blocks on a CPU."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

#: A matrix product with an inner or outer size at most this is a "skinny" one (below).
SKINNY = 8


@dataclass(frozen=True)
class _Prev:
    """In :func:`_skinny_matmuls`: the result of an earlier op of the same rewrite."""

    index: int


def _fake(node: Any) -> Any:
    """The fake value an FX node carries (``None`` for a non-node argument)."""
    return node.meta.get("val") if isinstance(node, torch.fx.Node) else None


def _is_call(node: Any, *targets: Any) -> bool:
    return (isinstance(node, torch.fx.Node) and node.op == "call_function"
            and node.target in targets and not node.kwargs)


Op = tuple[Any, tuple[Any, ...], dict[str, Any]]
_CONTIGUOUS = {"memory_format": torch.contiguous_format}


def _replace(graph: torch.fx.Graph, before: torch.fx.Node,
             ops: list[Op]) -> list[torch.fx.Node]:
    """Replace ``before`` by a chain of aten ops ``(op, args, kwargs)``; an argument
    ``_Prev(i)`` is the i-th op's result, and the last op's result replaces ``before``.

    The ops run on fake values first, so a chain that cannot be built changes nothing.
    """
    def resolve(arg: Any, done: list[Any], node: Callable[[Any], Any]) -> Any:
        if isinstance(arg, _Prev):
            return done[arg.index]
        if isinstance(arg, (list, tuple)):
            return type(arg)(resolve(a, done, node) for a in arg)
        return node(arg)

    metas: list[Any] = []
    for op, args, kwargs in ops:
        metas.append(op(*resolve(args, metas, lambda a: _fake(a) if isinstance(
            a, torch.fx.Node) else a), **kwargs))
    nodes: list[torch.fx.Node] = []
    with graph.inserting_before(before):
        for (op, args, kwargs), meta in zip(ops, metas, strict=True):
            nodes.append(graph.call_function(op, resolve(args, nodes, lambda a: a), kwargs))
            nodes[-1].meta["val"] = meta
    before.replace_all_uses_with(nodes[-1])
    graph.erase_node(before)
    return nodes


def _outer_products(a: torch.fx.Node, b: torch.fx.Node, k: int) -> list[Op]:
    """``a @ b`` for a short inner size ``k``: ``sum_i a[:, i:i+1] * b[i:i+1]``, unrolled,
    reading a contiguous copy of ``b`` (often a transposed weight, strided in memory)."""
    aten = torch.ops.aten
    ops: list[Op] = [(aten.clone.default, (b,), _CONTIGUOUS)]
    total = None
    for i in range(k):
        ops += [(aten.slice.Tensor, (a, 1, i, i + 1), {}),
                (aten.slice.Tensor, (_Prev(0), 0, i, i + 1), {})]
        ops.append((aten.mul.Tensor, (_Prev(len(ops) - 2), _Prev(len(ops) - 1)), {}))
        if total is not None:
            ops.append((aten.add.Tensor, (_Prev(total), _Prev(len(ops) - 1)), {}))
        total = len(ops) - 1
    return ops


def _column_sums(a: torch.fx.Node, b: torch.fx.Node, n: int) -> list[Op]:
    """``a @ b`` for few outputs ``n``: ``cat([(a * b[:, j]).sum(-1, True) for j], 1)``. One
    reduction per output, each along ``a``'s contiguous rows, is what inductor vectorises
    (a single ``(B, n)`` reduction got vectorised across the ``n`` outputs instead)."""
    aten = torch.ops.aten
    ops: list[Op] = [(aten.permute.default, (b, [1, 0]), {}),
                     (aten.clone.default, (_Prev(0),), _CONTIGUOUS)]
    columns = []
    for j in range(n):
        ops += [(aten.select.int, (_Prev(1), 0, j), {}),
                (aten.mul.Tensor, (a, _Prev(len(ops))), {}),
                (aten.sum.dim_IntList, (_Prev(len(ops) + 1), [-1], True), {})]
        columns.append(_Prev(len(ops) - 1))
    # cat, not stack: post-grad graphs hold decomposed ops only (stack is decomposed)
    ops.append((aten.cat.default, (columns, 1), {}))
    return ops


def _skinny_matmuls(graph: torch.fx.Graph) -> None:
    """Rewrite a CPU graph's skinny matrix products as fused pointwise work (in place).

    Why: on a CPU inductor hands every ``mm``/``addmm`` to the BLAS library, which is slow
    on skinny shapes: the input gradient of an MLP's first layer, ``(B, 128) @ (128, 2)``,
    took 141 µs at 1,000 chains against 330 µs for a ``(B, 128) @ (128, 128)`` product.
    A product with at most ``SKINNY`` outputs becomes one reduction per output
    (:func:`_column_sums`), one with at most ``SKINNY`` inner terms a sum of outer products
    (:func:`_outer_products`); inductor fuses both with the pointwise work around them.
    ``addmm`` is split into ``mm`` plus a bias add that fuses into the following activation
    (inductor does this on GPUs only), which saves the bias copy BLAS needs. Together they
    made the benchmark's MLP blocks 7-15 % faster. A node whose rewrite cannot be prepared
    is left as it was.
    """
    aten = torch.ops.aten
    for node in list(graph.nodes):
        if any(getattr(getattr(_fake(a), "device", None), "type", "cpu") != "cpu"
               for a in getattr(node, "args", ())):
            continue
        try:
            mm = node
            if _is_call(node, aten.addmm.default) and len(node.args) == 3:
                bias, a, b = node.args
                mm = _replace(graph, node, [(aten.mm.default, (a, b), {}),
                                            (aten.add.Tensor, (_Prev(0), bias), {})])[0]
            if _is_call(mm, aten.mm.default):
                a, b = mm.args
                (_, k), (_, n) = _fake(a).shape, _fake(b).shape
                if n <= SKINNY:  # few outputs: one reduction along a's rows per output
                    _replace(graph, mm, _column_sums(a, b, n))
                elif k <= SKINNY:  # a short inner dimension: k outer products, unrolled
                    _replace(graph, mm, _outer_products(a, b, k))
        except Exception:  # noqa: BLE001, S112 - an optimisation only: keep the node
            continue


def _cpu_passes(graph: torch.fx.Graph) -> None:
    """The post-grad passes the compiled blocks get on a CPU.

    Measured and left out: computing SiLU's ``sigmoid(z)`` once for its forward and
    backward (rewriting ``z / (exp(-z) + 1)`` as ``z * sigmoid(z)`` and merging the
    sigmoids) halves the exponentials but made the block 3-7 % slower: inductor then
    writes the shared values out and reads them back.
    """
    _skinny_matmuls(graph)


@functools.cache
def inductor_options(device_type: str) -> dict[str, Any]:
    """Per-compile inductor options: the skinny-product pass on CPUs (when torch has the
    custom-pass hook), nothing elsewhere."""
    if device_type != "cpu":
        return {}
    try:
        from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files
    except ImportError:  # pragma: no cover - a torch without custom passes
        return {}

    class CpuPasses(CustomGraphPass):
        def __call__(self, graph: torch.fx.Graph) -> None:
            _cpu_passes(graph)

        def uuid(self) -> Any:  # inductor's cache key: this file's contents
            return get_hash_for_files((__file__,))

    return {"post_grad_custom_post_pass": CpuPasses()}
