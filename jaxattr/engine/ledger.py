"""Where relevance goes: what each segment absorbs on the way from the logit to the input.

LRP relevance starts as the target logit ``f_t(x)`` and is conserved by a rule only when the
rule's inputs receive all of what reached its output. Biases, the stabiliser ε, AttnLRP's softmax
rule (Achtibat et al. 2024, Prop. 3.1) and any segment left on its gradient keep a share. The
ledger measures that share per segment:

.. math::

    A_s = \\sum R_{\\text{out}}(s) - \\sum_{k} \\sum R_{\\text{in},k}(s),

summed over every element of the segment's output and x-dependent inputs (and over the steps of
a ``scan`` whose body holds the segment). For a dense layer under LRP-ε,
``R_i = x_i Σ_j w_ij R_j / stab(z_j)`` with ``z_j = Σ_i w_ij x_i + b_j`` and
``stab(z) = z + ε·sign(z)``, so ``A = Σ_j R_j (b_j + ε·sign z_j) / stab(z_j)``: what the bias
and ε take.

Between segments, plumbing (reshapes, slices, broadcasts) passes its gradient, which keeps sums,
except where a node reads a *constant* float operand: a ``concatenate`` with a ViT's cls token, a
``pad``, a ``scan`` started from a constant state. What such a node hands to its constant
operands leaves the network there; the ledger has a row for it too (kind ``"plumbing"`` or
``"control"``, rule ``"gradient"``, ``absorbed`` = the relevance given to those operands). With
all rows, per example,

.. math::

    \\sum_i R_i(x) + \\sum_{\\text{rows}} A = f_t(x)

up to rounding. :func:`jaxattr.evaluation.checks.conservation` reports the gap
``f_t(x) − Σ_i R_i``; the ledger says which segments make it up.

The measure is functional, no callback: every segment is bound with a zero *probe* its forward
ignores and whose cotangent its backward sets to ``(A_s, ΣR_out)`` (see
:func:`jaxattr.engine.rewrite.bind_rule`); a node's constant operands are read through
``stop_gradient(c) + probe`` and its outputs get ``+ probe`` (see
:func:`jaxattr.engine.rewrite.run`). One ``jax.vjp`` returns the input relevance and every
probe's cotangent together; rows are keyed by segment and node, in the audit's order.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .rewrite import run
from .segment import Segment
from .trace import Lit, trace, trace_mode


class LedgerRow(NamedTuple):
    """What one segment (or one node handing relevance to a constant) absorbed."""

    index: int  # position in the ledger: in the audit's order (a segment at its first equation)
    nodes: tuple  # its equations, as :class:`~jaxattr.engine.audit.Row`'s ``node``
    kind: str  # segment kind (see ``ja.engine.KINDS``), or "plumbing" / "control" (a node
    #            outside segments that reads a constant float operand)
    name: str  # module path ("" when the model gives none)
    rule: str  # the rule applied (``repr``), or "gradient" (a segment no selector matches, a node)
    relevance: np.ndarray  # ΣR_out: the relevance that reached it, per example (batch,)
    absorbed: np.ndarray  # ΣR_out − ΣR_in: what it kept (a node: what it gave its constant
    #                       operands), per example (batch,)


def ledger(apply_fn: Callable, params: Any, x: Any, method: Any,
           target: Optional[Any] = None, *, per_example: bool = True) -> list:
    """One :class:`LedgerRow` per segment of ``apply_fn(params, x)`` under ``method``: what
    relevance reached it and what its rule absorbed (``A = ΣR_out − ΣR_in``, see the module
    docstring), and one per node outside segments that hands relevance to a constant operand
    (a cls token's ``concatenate``, a ``pad``, a ``scan`` from a constant state). Per example,
    ``Σ_i R_i + Σ_rows absorbed = f_t(x)``: the rows explain the gap
    :func:`ja.evaluation.checks.conservation <jaxattr.evaluation.checks.conservation>` reports.

    Args:
        apply_fn, params, x: as for ``ja.attribute`` (x batch first, logits ``(batch, classes)``).
        method: a relevance method (seeded with the target logit): ``ja.LRP(...)`` or
            ``ja.DeepTaylor(...)`` (its ``output_relu`` seeds ``max(f_t, 0)``).
        target: class per example or a scalar; ``None``: the predicted class.
        per_example: ``True`` (default): ``relevance`` and ``absorbed`` have shape ``(batch,)``,
            example ``b``'s share, whatever layout the segment's tensors have (Flax NNX's
            attention does not keep the batch first). They come from one backward pass per
            example, vmapped, each seeded with that example's logit alone (every rule is linear
            in the relevance it receives): batch-many times the memory of one pass. ``False``:
            one pass with the whole seed; both fields are scalars summed over the batch.

    Returns:
        The rows, ordered as ``ja.engine.audit(apply_fn, params, x, method)`` first lists their
        equations (a row's equations are the audit rows whose ``node`` is in ``nodes``; a
        ``control`` row, the ``scan``/``cond`` itself, precedes its body's rows). Inside a
        ``scan`` body the values are summed over the steps, inside a ``cond`` they count the
        branch taken; a ``control`` row's ``absorbed`` is only what reaches the node's own
        constant operands (initial carry, consts). The ``rule`` is the one the backward pass
        applies, so max pools show ``WinnerTakeAll()`` (the gradient, computed fast) where the
        audit says "gradient". Concrete NumPy arrays (float64 under ``jax_enable_x64``, else
        float32): call it outside ``jax.jit`` (it compiles its own program). Memory: besides the per-example
        passes, a probe as large as each constant operand of a listed node (a ``scan``'s
        consts include the weights its body reads).

    Raises:
        ValueError: for a method that does not propagate relevance from the logit
            (gradients, DeepLIFT's multipliers).

    Example:
        >>> import jax.numpy as jnp, jaxattr as ja
        >>> f = lambda p, x: x @ p["w"] + p["b"]                  # one dense layer with a bias
        >>> p = {"w": jnp.array([[1.0], [2.0]]), "b": jnp.array([1.0])}
        >>> x = jnp.array([[1.0, 1.0]])                           # f = 4, the bias keeps 1/4
        >>> [(r.kind, round(float(r.absorbed[0]), 4)) for r in
        ...  ja.engine.ledger(f, p, x, ja.LRP(ja.rules.Epsilon(0.0)))]
        [('dense', 1.0)]
    """
    from ..methods import DEFAULTS, _require_product_rules, _segments  # methods import the engine
    from ..rules.base import Gradient

    if getattr(method, "seed", None) != "logit" or not getattr(method, "strict", True):
        raise ValueError(f"the ledger follows relevance seeded with the target logit (ja.LRP, "
                         f"ja.DeepTaylor); {type(method).__name__} propagates something else "
                         "(gradients, multipliers), whose sums are not conserved")
    x = jnp.asarray(x)
    composite = method.composite()
    graph = trace(apply_fn, params, x, **trace_mode(True, bool(composite.layer_map)))
    segments = _segments(graph, True)
    assignment = (composite + DEFAULTS).assign(segments)
    _require_product_rules(segments, assignment)
    entries = _entries(graph, segments)
    # a segment no selector matches keeps its gradient, bound explicitly so it is measured too
    measured = {s: assignment.get(s, Gradient()) for s, _ in entries if isinstance(s, Segment)}
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    p_leaves = jax.tree_util.tree_leaves(params)
    relu_seed = bool(getattr(method, "output_relu", False))

    def zeros():
        return [jnp.zeros((2,), dtype) if avals is None else
                tuple({i: jnp.zeros(a.shape, a.dtype) for i, a in d.items()} for d in avals)
                for _, avals in entries]

    def totals(cts):
        """Per entry ``(absorbed, reached)``, summed over each probe's own axes."""
        out = []
        for ct in cts:
            if isinstance(ct, tuple):  # a node: (operand probes, output probes)
                ct = jnp.stack([sum((jnp.sum(v.astype(dtype)) for v in d.values()),
                                    jnp.zeros((), dtype)) for d in ct])
            out.append(ct)
        return jnp.stack(out) if out else jnp.zeros((0, 2), dtype)

    @jax.jit
    def compute(p_leaves, x, target):
        def f(x_, probes):
            keyed = {s: pr for (s, _), pr in zip(entries, probes)}
            outs = run(graph, measured, list(p_leaves) + [x_], probes=keyed)
            return jax.tree_util.tree_unflatten(graph.out_tree, outs)

        logits, vjp = jax.vjp(f, x, zeros())
        if target is None:
            target = jnp.argmax(logits, axis=-1)
        target = jnp.broadcast_to(jnp.asarray(target), logits.shape[:1])
        onehot = jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype)
        seed = onehot * (jax.nn.relu(logits) if relu_seed else logits)
        if not per_example:
            return totals(vjp(seed)[1])
        alone = jnp.eye(seed.shape[0], dtype=seed.dtype)[:, :, None] * seed[None]
        return jax.vmap(lambda s: totals(vjp(s)[1]))(alone)

    cts = np.asarray(compute(p_leaves, x, target))  # (entries, 2) or (batch, entries, 2)
    if per_example:
        cts = np.moveaxis(cts, 0, 1)
    rows = []
    for i, ((s, _), ct) in enumerate(zip(entries, cts)):
        if isinstance(s, Segment):
            nodes, kind = tuple(n.index for n in s.nodes), s.kind
            rule = repr(assignment[s]) if s in assignment else "gradient"
        else:
            nodes, kind, rule = (s.index,), "control" if s.bodies else "plumbing", "gradient"
        rows.append(LedgerRow(i, nodes, kind, s.name, rule, ct[..., 1], ct[..., 0]))
    return rows


def _entries(graph, segments) -> list:
    """What the ledger measures, in the order :func:`~jaxattr.engine.audit.audit` lists it:
    ``(segment, None)`` where its first equation stands; ``(node, (operands,
    outputs))`` for an x-dependent node outside segments that reads a constant float operand
    (a ``concatenate`` with a cls token, a ``pad``, a ``scan``'s constant initial carry), with the
    avals of those operands and of its x-dependent float outputs by position; bodies inline
    after their node."""
    seg_of = {id(n): s for s in segments for n in s.nodes}
    out: list = []
    seen: set = set()

    def floating(aval):
        return aval is not None and jnp.issubdtype(aval.dtype, jnp.inexact)

    def walk(g):
        for node in g.nodes:
            seg = seg_of.get(id(node))
            if seg is not None:
                if id(seg) not in seen:
                    seen.add(id(seg))
                    out.append((seg, None))
                continue
            x_dependent = (any(a in g.tainted for a in node.ins if not isinstance(a, Lit))
                           and any(o in g.tainted for o in node.outs))
            if not x_dependent:
                continue
            consts = {}
            for i, a in enumerate(node.ins):
                if isinstance(a, Lit):
                    v = jnp.asarray(a.value)
                    aval = a.aval if a.aval is not None else jax.ShapeDtypeStruct(v.shape, v.dtype)
                elif a not in g.tainted:
                    aval = g.avals.get(a)
                else:
                    continue
                if floating(aval):
                    consts[i] = aval
            if consts:
                outs = {i: g.avals[o] for i, o in enumerate(node.outs)
                        if o in g.tainted and floating(g.avals.get(o))}
                out.append((node, (consts, outs)))
            for body in node.bodies or ():
                walk(body)

    walk(graph)
    return out


def format_ledger(rows) -> str:
    """The ledger as an aligned text table, summed over the batch, with the total absorbed."""
    total = lambda v: float(np.sum(v))
    head = ("#", "nodes", "kind", "module", "rule", "reached", "absorbed")
    table = [head] + [(str(r.index), _span(r.nodes), r.kind, r.name, r.rule,
                       f"{total(r.relevance):.6g}", f"{total(r.absorbed):.6g}") for r in rows]
    table.append(("", "", "", "", "total", "", f"{sum(total(r.absorbed) for r in rows):.6g}"))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in table)


def _span(nodes) -> str:
    nodes = [str(n) for n in nodes]
    return nodes[0] if len(nodes) == 1 else f"{nodes[0]}..{nodes[-1]}"
