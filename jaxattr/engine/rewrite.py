"""Re-evaluate a traced graph with rule-wrapped segments: the one interpreter of jaxattr.

Each segment that has a rule is bound as a ``jax.custom_vjp`` function whose forward is exactly
the traced computation and whose backward is the rule. Everything else is re-bound as traced, so
the result is an ordinary JAX function: ``jax.vjp``, ``jit``, ``vmap`` and sharding compose with it.
The engine knows no method by name: a method is a rule assignment plus a seed and a
post-processing step (see :mod:`jaxattr.methods`).

Control flow whose bodies hold segments (see :mod:`jaxattr.engine.segment`) is re-emitted by the
same interpreter: a ``scan`` as ``jax.lax.scan`` (its length, direction, ``unroll``, consts,
carries and xs as traced; the loop stays rolled) whose body calls :func:`run` on the body graph,
a ``cond`` as ``jax.lax.switch`` whose branches do. With a reference (DeepLIFT) the loop also
carries the reference's carry and scans over the reference's xs, so the body builds the reference
environment of every step (``body_reference``) and hands it to its rules; a switch evaluates the
reference through the branch the *actual* input takes (summation to delta then holds when x and
the reference take the same branch).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

from .layer import make_view
from .segment import Segment
from .trace import Graph, Lit


def _zeros_like(tree):
    def zero(v):
        v = jnp.asarray(v)
        if jnp.issubdtype(v.dtype, jnp.inexact):
            return jnp.zeros_like(v)
        return np.zeros(v.shape, dtype=jax.dtypes.float0)

    return jax.tree_util.tree_map(zero, tree)


def bind_rule(rule, segment: Segment, inputs: Sequence, consts: Sequence, reference: Any = None,
              probe: Any = None):
    """``segment``'s forward with ``rule.backward`` as its VJP (zero cotangent for constants).

    An input the rule sends no relevance to (``None`` in what ``rule.backward`` returns: a
    normalising scale held constant, a gate, CP-LRP's attention weights) gets a *symbolic* zero,
    and a segment reached by nothing but symbolic zeros does not run its rule: JAX then skips
    the backward of whatever feeds only such inputs (LayerNorm's statistics under AttnLRP, the
    attention scores under CP-LRP, an LSTM's gates under signal-take-all), which would compute
    zeros at full cost.

    ``probe`` (optional, a float array of shape ``(2,)`` that the forward ignores) receives as its
    cotangent ``(ΣR_out − ΣR_in, ΣR_out)``: what the rule absorbed and what reached the segment
    (summed over every element; see :func:`jaxattr.engine.ledger`)."""

    def forward(xs, cs, ref, probe):
        return make_view(segment, cs).fn(*xs)

    def fwd(xs, cs, ref, probe):
        xs, cs, ref, probe = jax.tree_util.tree_map(lambda p: p.value, (xs, cs, ref, probe),
                                                    is_leaf=_is_primal)
        out = forward(xs, cs, ref, probe)
        return out, (xs, cs, ref, out, probe)

    def bwd(res, ct):
        xs, cs, ref, out, probe = res
        if isinstance(ct, SymbolicZero):  # no relevance reached the segment: none leaves it
            # the rule is still traced, for its errors (a rule on the wrong segment); XLA drops
            # the unused result
            rule.backward(make_view(segment, cs), xs, out, jnp.zeros_like(out), ref)
            return (None,) * len(xs), None, None, None
        cts = rule.backward(make_view(segment, cs), xs, out, ct, ref)
        cts = tuple(None if c is None else jnp.asarray(c, dtype=x.dtype).reshape(x.shape)
                    for c, x in zip(cts, xs))
        if probe is None:
            probe_ct = None
        else:
            total = lambda v: jnp.sum(jnp.asarray(v, dtype=probe.dtype))
            arrived = total(ct)
            probe_ct = jnp.stack([arrived - sum(total(c) for c in cts if c is not None), arrived])
        return cts, _zeros_like(cs), _zeros_like(ref), probe_ct

    f = jax.custom_vjp(forward)
    f.defvjp(fwd, bwd, symbolic_zeros=True)
    return f(tuple(inputs), tuple(consts), reference, probe)


def _is_primal(v) -> bool:
    return isinstance(v, CustomVJPPrimal)


def run(graph: Graph, assignment: Mapping[Segment, Any], leaves: Sequence,
        reference_env: Optional[Mapping] = None,
        body_reference: Optional[Callable] = None,
        probes: Optional[Mapping[Segment, Any]] = None) -> list:
    """Evaluate ``graph`` on ``leaves`` (flattened ``(params, x)``) with ``assignment``'s rules.

    ``reference_env`` (var -> value, from :func:`environment` on the reference input) is handed
    to every rule as the reference values of its segment's inputs (DeepLIFT).
    ``body_reference(body, leaves, reference_leaves) -> env`` builds the reference environment of
    a control-flow body from its actual and reference inputs at one step (default:
    :func:`environment` of the reference inputs).
    ``probes`` make the backward report where relevance goes (see :mod:`jaxattr.engine.ledger`;
    the nodes and segments of bodies included): segment -> probe of :func:`bind_rule`;
    node (not in a segment) -> ``({operand position: zeros like it}, {output position: zeros
    like it})``: the operand probes' cotangents are what the node passes to those (constant)
    operands, the output probes' what reaches the node. A probe's cotangent is summed over the
    steps of a ``scan`` and zero in a ``cond`` branch not taken.
    """
    env = dict(zip(graph.invars, leaves))
    read = lambda a: a.value if isinstance(a, Lit) else env[a]
    owned = {id(n): seg for seg in assignment for n in seg.nodes}
    for node in graph.nodes:
        seg = owned.get(id(node))
        if seg is None:
            x_dependent = any(a in graph.tainted for a in node.ins if not isinstance(a, Lit))
            vals = [read(a) for a in node.ins]
            node_probes = None if probes is None else probes.get(node)
            if node_probes is not None:
                vals = _probe_operands(vals, node_probes[0])
            if node.bodies and x_dependent:
                refs = None
                if reference_env is not None:
                    refs = [a.value if isinstance(a, Lit) else reference_env[a] for a in node.ins]
                outs = _control_flow(node, vals, refs, assignment, body_reference, probes)
            else:
                # fast implementations (custom_vjp) only where the vjp of the explanation enters
                # them: on x-dependent values; elsewhere forward-mode autodiff of the explanation
                # must pass
                outs = node.bind(*vals, fast=x_dependent)
            if node_probes is not None:
                outs = [o + node_probes[1][i] if i in node_probes[1] else o
                        for i, o in enumerate(outs)]
            env.update(zip(node.outs, outs))
        elif seg.output in node.outs:
            ref = None
            if reference_env is not None:
                ref = tuple(reference_env[v] for v in seg.inputs)
            env[seg.output] = bind_rule(assignment[seg], seg, [env[v] for v in seg.inputs],
                                        [env[v] for v in seg.consts()], ref,
                                        None if probes is None else probes.get(seg))
    return [read(a) for a in graph.outvars]


def _probe_operands(vals, probes: Mapping[int, Any]) -> list:
    """``vals`` with each probed operand ``i`` replaced by ``stop_gradient(v) + probes[i]``: the
    probe's cotangent is what the node passes to that (constant) operand, and it goes no further
    (so a constant read by several nodes is counted once per reader, never twice)."""
    out = list(vals)
    for i, probe in probes.items():
        v = jnp.asarray(vals[i], dtype=probe.dtype)
        out[i] = jax.lax.stop_gradient(v) + probe
    return out


def _control_flow(node, vals, refs, assignment, body_reference, probes=None) -> list:
    """``node`` (a ``scan`` or ``cond`` with bodies) re-emitted with :func:`run` in its bodies;
    ``refs``: the reference values of its inputs, or ``None``."""
    body_reference = body_reference or (lambda body, leaves, ref_leaves: environment(body, ref_leaves))

    def call(body, leaves, ref_leaves):
        """The body's outputs and, with a reference, the reference's (a literal output in its
        traced dtype, so that branches and carries keep their types)."""
        def typed(vals):
            return [jnp.asarray(v, dtype=a.aval.dtype) if isinstance(a, Lit) and a.aval is not None
                    else v for v, a in zip(vals, body.outvars)]

        if ref_leaves is None:
            return typed(run(body, assignment, leaves, None, body_reference, probes)), None
        ref_env = body_reference(body, leaves, ref_leaves)
        outs = run(body, assignment, leaves, ref_env, body_reference, probes)
        return typed(outs), typed([a.value if isinstance(a, Lit) else ref_env[a]
                                   for a in body.outvars])

    if node.prim == "cond":
        index, ops = vals[0], list(vals[1:])
        ref_ops = None if refs is None else list(refs[1:])
        branches = [functools.partial(lambda body, o, r: call(body, o, r)[0], body)
                    for body in node.bodies]
        return list(jax.lax.switch(index, branches, ops, ref_ops))
    if node.prim != "scan":  # pragma: no cover - the tracer gives bodies to scan and cond only
        raise NotImplementedError(f"control flow '{node.prim}'")
    p = node.params
    n_c, n_k = p["num_consts"], p["num_carry"]
    consts, init, xs = vals[:n_c], vals[n_c:n_c + n_k], vals[n_c + n_k:]
    (body,) = node.bodies
    if refs is None:
        def step(carry, x):
            outs, _ = call(body, list(consts) + list(carry) + list(x), None)
            return outs[:n_k], outs[n_k:]

        carry, ys = jax.lax.scan(step, list(init), list(xs), length=p["length"],
                                 reverse=p["reverse"], unroll=p["unroll"])
        return list(carry) + list(ys)
    r_consts, r_init, r_xs = refs[:n_c], refs[n_c:n_c + n_k], refs[n_c + n_k:]

    def paired_step(carry, x):
        (c, rc), (x_, rx) = carry, x
        outs, r_outs = call(body, list(consts) + list(c) + list(x_),
                            list(r_consts) + list(rc) + list(rx))
        return (outs[:n_k], r_outs[:n_k]), outs[n_k:]

    (carry, _), ys = jax.lax.scan(paired_step, (list(init), list(r_init)), (list(xs), list(r_xs)),
                                  length=p["length"], reverse=p["reverse"], unroll=p["unroll"])
    return list(carry) + list(ys)


def environment(graph: Graph, leaves: Sequence) -> dict:
    """Every variable's value for a plain evaluation of ``graph`` on ``leaves`` (the traced
    primitives: nothing here is differentiated by the rules' own vjp)."""
    env = dict(zip(graph.invars, leaves))
    read = lambda a: a.value if isinstance(a, Lit) else env[a]
    for node in graph.nodes:
        env.update(zip(node.outs, node.bind(*[read(a) for a in node.ins], fast=False)))
    return env

