"""Which rule each equation got: a table for tests, error messages and curious users."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .lenient import lenient_segments
from .segment import PLUMBING, segment
from .trace import trace


class Row(NamedTuple):
    node: int  # equation index in the flattened program
    primitive: str
    name: str  # module path ("" when the model gives none)
    kind: str  # segment kind, "plumbing" (ordinary VJP), "other" (any other op a lenient
    #            segmentation leaves alone: ordinary VJP) or "constant" (independent of x, or
    #            dependent only through stop_gradient, like a softmax's max shift)
    rule: str  # rule applied, or "gradient"


def audit(apply_fn: Callable, params: Any, x: Any, method: Any = None) -> list:
    """One :class:`Row` per equation of ``apply_fn(params, x)``, with the rule ``method`` puts there.

    Example:
        >>> import jax.numpy as jnp, jaxattr as ja
        >>> rows = ja.engine.audit(lambda p, x: jnp.tanh(x @ p), jnp.ones((3, 2)), jnp.ones((1, 3)),
        ...                        ja.LRP(ja.rules.Epsilon()))
        >>> [(r.kind, r.rule) for r in rows]
        [('dense', 'Epsilon(epsilon=1e-06)'), ('activation', 'Pass()')]
    """
    graph = trace(apply_fn, params, x)
    # a method with ``strict = False`` (gradient family, Guided/DeconvNet) cuts out ReLUs and max
    # pools only; every other x-dependent node keeps its derivative
    strict = getattr(method, "strict", True)
    segments = segment(graph) if strict else lenient_segments(graph)
    assignment = method.composite().assign(segments) if method is not None else {}
    seg_of = {id(n): s for s in segments for n in s.nodes}
    rows = []
    for node in graph.nodes:
        seg = seg_of.get(id(node))
        if seg is not None:
            kind, rule = seg.kind, repr(assignment[seg]) if seg in assignment else "gradient"
        elif (any(a in graph.tainted for a in node.ins if not hasattr(a, "value"))
              and any(o in graph.tainted for o in node.outs)):  # stop_gradient'ed: a constant
            kind = "plumbing" if strict or node.prim in PLUMBING else "other"
            rule = "gradient"
        else:
            kind, rule = "constant", "-"
        rows.append(Row(node.index, node.prim, node.name, kind, rule))
    return rows


def format_audit(rows) -> str:
    """The audit as an aligned text table."""
    head = Row("#", "primitive", "module", "kind", "rule")
    table = [head] + list(rows)
    widths = [max(len(str(r[i])) for r in table) for i in range(len(head))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in table)
