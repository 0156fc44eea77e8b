"""Which rule each equation got: a table for tests, error messages and curious users."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .lenient import lenient_segments
from .segment import PLUMBING, segment
from .trace import trace, trace_mode


class Row(NamedTuple):
    node: Any  # equation index in the program: an int at the top; inside a control-flow body a
    #            path, "7.2" (node 2 of node 7's scan body), "7[1].0" (node 0 of its branch 1)
    primitive: str
    name: str  # module path ("" when the model gives none)
    kind: str  # segment kind, "plumbing" (ordinary VJP), "other" (any other op a lenient
    #            segmentation leaves alone: ordinary VJP), "control" (a scan/cond whose body
    #            rows follow it) or "constant" (no derivative reaches the output through it:
    #            independent of x, dependent only through stop_gradient like a softmax's max
    #            shift, or a cond's branch index)
    rule: str  # rule applied, or "gradient"


def audit(apply_fn: Callable, params: Any, x: Any, method: Any = None) -> list:
    """One :class:`Row` per equation of ``apply_fn(params, x)``, with the rule ``method`` puts there.
    The equations of an x-dependent ``scan``/``cond`` body follow their node's row.

    Example:
        >>> import jax.numpy as jnp, jaxattr as ja
        >>> rows = ja.engine.audit(lambda p, x: jnp.tanh(x @ p), jnp.ones((3, 2)), jnp.ones((1, 3)),
        ...                        ja.LRP(ja.rules.Epsilon()))
        >>> [(r.kind, r.rule) for r in rows]
        [('dense', 'Epsilon(epsilon=1e-06)'), ('activation', 'Pass()')]
    """
    strict = getattr(method, "strict", True)
    composite = method.composite() if method is not None else None
    # the same trace and segmentation the method's backward uses (see jaxattr.methods.backward)
    has_rules = composite is not None and bool(composite.layer_map)
    graph = trace(apply_fn, params, x, **trace_mode(strict, has_rules))
    # a method with ``strict = False`` (gradient family, Guided/DeconvNet) cuts out ReLUs and max
    # pools only; every other x-dependent node keeps its derivative
    segments = segment(graph) if strict else lenient_segments(graph)
    assignment = composite.assign(segments) if method is not None else {}
    seg_of = {id(n): s for s in segments for n in s.nodes}
    rows: list = []

    def walk(g):
        for node in g.nodes:
            seg = seg_of.get(id(node))
            # x-dependent in and out (a node behind stop_gradient, a softmax's shift, is constant)
            x_dependent = (any(a in g.tainted for a in node.ins if not hasattr(a, "value"))
                           and any(o in g.tainted for o in node.outs))
            if seg is not None:
                kind, rule = seg.kind, repr(assignment[seg]) if seg in assignment else "gradient"
            elif node.bodies and x_dependent:
                kind, rule = "control", "gradient"  # re-emitted: its body rows follow
            elif x_dependent:
                kind = "plumbing" if strict or node.prim in PLUMBING else "other"
                rule = "gradient"
            else:
                kind, rule = "constant", "-"
            rows.append(Row(node.index, node.prim, node.name, kind, rule))
            if node.bodies and x_dependent:
                for body in node.bodies:
                    walk(body)

    walk(graph)
    return rows


def format_audit(rows) -> str:
    """The audit as an aligned text table."""
    head = Row("#", "primitive", "module", "kind", "rule")
    table = [head] + list(rows)
    widths = [max(len(str(r[i])) for r in table) for i in range(len(head))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in table)
