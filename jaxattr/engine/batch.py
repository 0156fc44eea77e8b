"""Refuse a model that mixes the examples of its batch, before any attribution is computed.

Attributions are per example: ``apply_fn(params, x)[i]`` must depend on ``x[i]`` alone. A model
in training mode breaks that — Flax's ``nn.BatchNorm(use_running_average=False)`` normalises
with the batch's mean and variance — and every method then returns, for each example, an
attribution that moves with the rest of the batch, the gradient included. Nothing in the numbers
shows it. :func:`check_batch_independent` finds it in the traced program instead: it follows
where the batch axis of ``x`` is in every x-dependent value (through layout changes, products,
convolutions, reductions over other axes, ``scan`` and ``cond`` bodies) and raises
:class:`BatchCouplingError`, naming the operation and its module path, at the first one that
combines different examples: a reduction, cumulative sum, sort or pooling window over the batch
axis, a product that contracts it or pairs two examples, a convolution over it, a ``scan`` over
the examples whose carry takes one example into another's result (or into a final carry the
model uses).

The check is static (no values, no extra program: a walk over the trace at compile time) and
errs on the side of silence: where it cannot follow the batch axis (a gather, slice or
concatenation along it, a reshape that splits it from its leading position) it stops following
that value rather than guess. ``ja.evaluation.checks.batch_independence`` measures the coupling
numerically for any model. A batch of one example is never refused.
"""

from __future__ import annotations

import math
from typing import Optional

from .segment import ELEMENTWISE
from .trace import Graph, Lit, _forward_taint

__all__ = ["BatchCouplingError", "check_batch_independent"]

#: one-operand reductions with an ``axes`` parameter
_REDUCE = frozenset({"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and",
                     "reduce_or", "reduce_xor", "argmax", "argmin"})
_CUMULATIVE = frozenset({"cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"})
_WINDOWS = frozenset({"reduce_window_sum", "reduce_window_max", "reduce_window_min",
                      "reduce_window"})
_SAME = ELEMENTWISE | {"select_n", "reduce_precision", "stop_gradient", "copy", "copy_p",
                       "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr",
                       "optimization_barrier", "sharding_constraint", "device_put"}


class BatchCouplingError(ValueError):
    """The model combines different examples of the batch (a model in training mode)."""


class _Coupled(Exception):
    def __init__(self, what: str):
        self.what = what


def check_batch_independent(graph: Graph) -> None:
    """Raise :class:`BatchCouplingError` if the traced model combines examples of its batch.

    ``graph``: a trace of ``apply_fn(params, x)`` with ``x`` batch-first (bodies of control flow
    traced: :func:`jaxattr.engine.trace.trace`'s defaults)."""
    (x_var,) = graph.x_vars[:1] or (None,)
    if x_var is None:
        return
    batch = graph.avals[x_var].shape[0] if graph.avals[x_var].shape else 1
    if batch <= 1:
        return
    states = {v: 0 for v in graph.x_vars
              if graph.avals[v].shape and graph.avals[v].shape[0] == batch}
    _walk(graph, states, batch)


def _walk(graph: Graph, states: dict, batch: int) -> list:
    """Propagate ``states`` (var -> the axis whose outer factor is the batch) through
    ``graph``; return its outputs' states (``None``: not followed)."""
    for node in graph.nodes:
        axes = [None if isinstance(a, Lit) else states.get(a) for a in node.ins]
        if all(k is None for k in axes):
            continue
        try:
            outs = _step(node, axes, graph, batch, states)
        except (KeyError, IndexError, TypeError, AttributeError):
            # a primitive whose parameters look unlike what this check knows (another jax
            # release): stop following its outputs rather than fail the user's attribution
            outs = [None] * len(node.outs)
        except _Coupled as err:
            where = f"at module path '{node.name}'" if node.name else "(no module path)"
            raise BatchCouplingError(
                f"the model combines different examples of its batch: '{node.prim}' {where} "
                f"{err.what}. Each example's attribution would then depend on the rest of the "
                "batch, for every method (BatchNorm in training mode does this: Flax's "
                "nn.BatchNorm(use_running_average=False); call an NNX model's .eval()). Explain "
                "the model in inference mode, or one example at a time (a batch of 1)."
            ) from None
        for v, k in zip(node.outs, outs):
            if k is not None:
                states[v] = k
    return [None if isinstance(a, Lit) else states.get(a) for a in graph.outvars]


def _shape(graph: Graph, atom) -> tuple:
    return tuple(getattr(graph.avals.get(atom), "shape", ())) if not isinstance(atom, Lit) else ()


def _step(node, axes: list, graph: Graph, batch: int, states: dict) -> list:
    prim, p = node.prim, node.params
    n_out = len(node.outs)
    known = [(i, k) for i, k in enumerate(axes) if k is not None]
    i0, k = known[0]
    out_shape = _shape(graph, node.outs[0])

    if prim in _SAME:
        ks = {kk for i, kk in known if _shape(graph, node.ins[i]) == out_shape}
        if len(ks) > 1:
            raise _Coupled("combines values whose batch axes differ (example i with example j)")
        same = next(iter(ks), None)  # for the outputs of the operands' shape (a call's aux: not)
        return [same if _shape(graph, o) == out_shape else None for o in node.outs]
    if prim == "broadcast_in_dim":
        return [p["broadcast_dimensions"][k]]
    if prim == "transpose":
        return [list(p["permutation"]).index(k)]
    if prim == "squeeze":
        return [k - sum(1 for d in p["dimensions"] if d < k)]
    if prim == "reshape":
        return [_reshaped(_shape(graph, node.ins[0]), k, out_shape, batch)]
    if prim in _REDUCE:
        if k in p["axes"]:
            raise _Coupled(f"reduces over the batch axis {k} (axes {tuple(p['axes'])})")
        return [k - sum(1 for d in p["axes"] if d < k)] * n_out
    if prim in _CUMULATIVE:
        if p["axis"] == k:
            raise _Coupled(f"accumulates along the batch axis {k}")
        return [k]
    if prim == "sort":
        if p["dimension"] == k:
            raise _Coupled(f"sorts along the batch axis {k}")
        return [k] * n_out
    if prim in _WINDOWS:
        size, stride = p["window_dimensions"][k], p["window_strides"][k]
        pad = tuple(p["padding"][k]) if "padding" in p else (0, 0)
        if size != 1 or stride != 1 or pad != (0, 0):
            raise _Coupled(f"pools windows across the batch axis {k}")
        return [k] * n_out
    if prim == "dot_general":
        return [_dot(p["dimension_numbers"], axes, [len(_shape(graph, a)) for a in node.ins[:2]])]
    if prim == "conv_general_dilated":
        dn = p["dimension_numbers"]
        if axes[1] is not None and axes[0] is None:
            return [None]  # x as the kernel: not followed
        if p.get("batch_group_count", 1) != 1:
            raise _Coupled("groups the batch (batch_group_count > 1)")
        if k != dn.lhs_spec[0]:
            raise _Coupled(f"convolves over the batch axis {k}")
        return [dn.out_spec[0]]
    if prim == "slice":
        shape = _shape(graph, node.ins[0])
        strides = p.get("strides") or (1,) * len(shape)
        keep = p["start_indices"][k] == 0 and p["limit_indices"][k] == shape[k] and strides[k] == 1
        return [k if keep else None]
    if prim == "dynamic_slice":
        return [k if i0 == 0 and p["slice_sizes"][k] == _shape(graph, node.ins[0])[k] else None]
    if prim == "pad":
        return [k if i0 == 0 and tuple(p["padding_config"][k]) == (0, 0, 0) else None]
    if prim == "gather":  # indexing along other axes: the batch axis is a whole offset dim
        dn, shape = p["dimension_numbers"], _shape(graph, node.ins[0])
        kept = [d for d in range(len(shape))
                if d not in dn.collapsed_slice_dims and d not in dn.operand_batching_dims]
        whole = (i0 == 0 and axes[1] is None and k in kept and k not in dn.start_index_map
                 and p["slice_sizes"][k] == shape[k])
        return [dn.offset_dims[kept.index(k)] if whole else None]
    if prim == "rev":
        return [None if k in p["dimensions"] else k]
    if prim == "concatenate":
        ks = {kk for _, kk in known}
        return [k if len(ks) == 1 and p["dimension"] != k else None]
    if prim == "scan" and node.bodies:
        return _scan(node, axes, graph, batch, states)
    if prim == "cond" and node.bodies:
        if axes[0] is not None:
            raise _Coupled("chooses one branch for the whole batch from x")
        outs = [_walk(body, _bind(body, axes[1:], states), batch) for body in node.bodies]
        return [o[0] if all(x == o[0] for x in o) else None for o in zip(*outs)]
    return [None] * n_out  # not followed


def _bind(body: Graph, axes, states: dict) -> dict:
    """``states`` extended with ``body``'s inputs at ``axes``."""
    out = dict(states)
    out.update({v: k for v, k in zip(body.invars, axes) if k is not None})
    return out


def _scan(node, axes: list, graph: Graph, batch: int, states: dict) -> list:
    p = node.params
    n_c, n_k = p["num_consts"], p["num_carry"]
    (body,) = node.bodies
    consts, carry, xs = axes[:n_c], axes[n_c:n_c + n_k], axes[n_c + n_k:]
    if any(k == 0 for k in xs):  # scanning over the examples: a carry may take one to the next
        _carried_over(node, [k == 0 for k in xs], graph)
        return [None] * len(node.outs)  # otherwise (``lax.map``): not followed
    xs = [None if k is None else k - 1 for k in xs]
    for _ in range(2):  # a carry whose axis moves in the body is not followed
        outs = _walk(body, _bind(body, list(consts) + list(carry) + xs, states), batch)
        settled = [c if c == o else None for c, o in zip(carry, outs[:n_k])]
        if settled == list(carry):
            break
        carry = settled
    ys = [None if k is None else k + 1 for k in outs[n_k:]]
    return list(carry) + ys


def _carried_over(node, over_batch: list, graph: Graph) -> None:
    """Raise if a ``scan`` over the examples carries what it saw of one example into what it
    returns for another, or into a final carry the model goes on to use."""
    n_c, n_k = node.params["num_consts"], node.params["num_carry"]
    (body,) = node.bodies
    seen = _forward_taint(body, {v for v, b in zip(body.invars[n_c + n_k:], over_batch) if b})
    carried = {i for i in range(n_k) if body.outvars[i] in seen}
    while True:  # what the carry reaches on later steps (through other carries too)
        reach = _forward_taint(body, {body.invars[n_c + i] for i in carried})
        more = carried | {i for i in range(n_k) if body.outvars[i] in reach}
        if more == carried:
            break
        carried = more
    if not carried:
        return
    if any(not isinstance(a, Lit) and a in reach for a in body.outvars[n_k:]):
        raise _Coupled("scans over the batch axis with a carry: what it returns for one example "
                       "depends on the examples before it")
    users = graph.consumers()
    if any(node.outs[i] in users or node.outs[i] in graph.outvars for i in carried):
        raise _Coupled("scans over the batch axis and uses its final carry, which depends on "
                       "every example")


def _dot(dimension_numbers, axes: list, ranks: list) -> Optional[int]:
    (lc, rc), (lb, rb) = dimension_numbers
    free = [[d for d in range(ranks[0]) if d not in lc and d not in lb],
            [d for d in range(ranks[1]) if d not in rc and d not in rb]]
    out = set()
    for side, k in enumerate(axes[:2]):
        if k is None:
            continue
        contracting, batch_dims = (lc, lb) if side == 0 else (rc, rb)
        if k in contracting:
            raise _Coupled(f"contracts the batch axis {k}: a sum over examples")
        if k in batch_dims:
            out.add(list(batch_dims).index(k))
        else:
            out.add(len(lb) + (0 if side == 0 else len(free[0])) + free[side].index(k))
    if len(out) > 1:
        raise _Coupled("multiplies every example with every other (an outer product over the "
                       "batch)")
    return out.pop()


def _reshaped(shape: tuple, k: int, new_shape: tuple, batch: int) -> Optional[int]:
    """The axis of ``new_shape`` whose outer factor is the batch, which is the outer factor of
    axis ``k`` of ``shape`` (row-major), or ``None`` if the reshape moves it elsewhere."""
    prefix = math.prod(shape[:k])
    acc = 1
    for j, n in enumerate(new_shape):
        if acc == prefix and n % batch == 0 and n != 1:
            return j
        acc *= n
        if acc > prefix:
            return None
    return None

