"""Values that depend on x behind ``stop_gradient``: what a reference-based method cannot credit.

Every rule sees a value computed from ``x`` through ``jax.lax.stop_gradient`` as a constant of
its segment, taken at ``x``. For LRP that is a bias like any other (it absorbs its share). For
DeepLIFT it breaks summation to delta: the value is different at the reference, and that
difference is credited to nothing — ``h − stop_gradient(max h)`` before a ``tanh`` summed to
2.66 where the logit changed by −12.6. :func:`check_reference_exact` refuses such a model for the
reference-based methods, naming the ``stop_gradient`` and its module path, in the graph and in
every ``scan`` body and ``cond`` branch (where a stopped value that reaches a carry or a branch's
result is refused like one that reaches the output). One use is exempt:
the max shift of a softmax, which the softmax cancels (``softmax(z − c) = softmax(z)`` for any
``c`` constant along its axis), so the softmax segment is exact with it.
"""

from __future__ import annotations

from typing import Sequence

from .segment import _SHIFT, Segment, UnsupportedPrimitiveError
from .trace import Graph, _forward_taint, is_var, subgraphs

__all__ = ["check_reference_exact"]


def check_reference_exact(graph: Graph, segments: Sequence[Segment], method: str) -> None:
    """Raise :class:`UnsupportedPrimitiveError` if a value that depends on ``x`` reaches a rule
    through ``stop_gradient`` (other than a softmax's max shift): ``method`` (its name, for the
    message) would not sum to delta."""
    depends = _forward_taint(graph, set(graph.x_vars))  # bodies' variables included
    shifts = {c for seg in segments if seg.kind == "softmax" for c in seg.consts()}
    for g in (graph, *subgraphs(graph)):
        users, outs = g.consumers(), {a for a in g.outvars if is_var(a)}
        for node in g.nodes:
            if node.prim == "stop_gradient" and any(is_var(a) and a in depends for a in node.ins) \
                    and not _only_shifts(node.outs[0], users, outs, shifts):
                _refuse(node, method)


def _refuse(node, method: str):
    where = f"at module path '{node.name}'" if node.name else "(no module path)"
    raise UnsupportedPrimitiveError(
        f"'stop_gradient' {where} hides a value that depends on x from {method}: it is a "
        "constant to the rules, but it changes between x and the reference, and that change "
        "would be credited to nothing (the contributions would not sum to the change of the "
        f"output). Remove the stop_gradient for {method}, or explain with a method without "
        "a reference (ja.LRP, the gradient family).")


def _only_shifts(v, users: dict, outs: set, shifts: set, limit: int = 32) -> bool:
    """Whether ``v`` reaches rules only as (part of) a softmax's shift: every path from it ends
    in a softmax segment's constants, through the shift's own operations (:data:`_SHIFT`), and
    none leaves its graph (``outs``: the graph's outputs, a body's carry or results)."""
    todo, seen = [v], set()
    while todo:
        u = todo.pop()
        if u in seen:
            continue
        seen.add(u)
        if len(seen) > limit or u in outs:
            return False
        if u in shifts:
            continue
        for node in users.get(u, ()):
            if node.prim not in _SHIFT:
                return False
            todo.extend(node.outs)
    return True
