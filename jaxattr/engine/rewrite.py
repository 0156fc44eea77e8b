"""Re-evaluate a traced graph with rule-wrapped segments: the one interpreter of jaxattr.

Each segment that has a rule is bound as a ``jax.custom_vjp`` function whose forward is exactly
the traced computation and whose backward is the rule. Everything else is re-bound as traced, so
the result is an ordinary JAX function: ``jax.vjp``, ``jit``, ``vmap`` and sharding compose with it.
The engine knows no method by name: a method is a rule assignment plus a seed and a
post-processing step (see :mod:`jaxattr.methods`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

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


def bind_rule(rule, segment: Segment, inputs: Sequence, consts: Sequence, reference: Any = None):
    """``segment``'s forward with ``rule.backward`` as its VJP (zero cotangent for constants)."""

    def forward(xs, cs, ref):
        return make_view(segment, cs).fn(*xs)

    def fwd(xs, cs, ref):
        out = forward(xs, cs, ref)
        return out, (xs, cs, ref, out)

    def bwd(res, ct):
        xs, cs, ref, out = res
        cts = rule.backward(make_view(segment, cs), xs, out, ct, ref)
        cts = tuple(jnp.asarray(c, dtype=x.dtype).reshape(x.shape) for c, x in zip(cts, xs))
        return cts, _zeros_like(cs), _zeros_like(ref)

    f = jax.custom_vjp(forward)
    f.defvjp(fwd, bwd)
    return f(tuple(inputs), tuple(consts), reference)


def run(graph: Graph, assignment: Mapping[Segment, Any], leaves: Sequence,
        reference_env: Optional[Mapping] = None) -> list:
    """Evaluate ``graph`` on ``leaves`` (flattened ``(params, x)``) with ``assignment``'s rules.

    ``reference_env`` (var -> value, from :func:`environment` on the reference input) is handed
    to every rule as the reference values of its segment's inputs (DeepLIFT).
    """
    env = dict(zip(graph.invars, leaves))
    read = lambda a: a.value if isinstance(a, Lit) else env[a]
    owned = {id(n): seg for seg in assignment for n in seg.nodes}
    for node in graph.nodes:
        seg = owned.get(id(node))
        if seg is None:
            # fast implementations (custom_vjp) only where the vjp of the explanation enters them:
            # on x-dependent values; elsewhere forward-mode autodiff of the explanation must pass
            fast = any(a in graph.tainted for a in node.ins if not isinstance(a, Lit))
            env.update(zip(node.outs, node.bind(*[read(a) for a in node.ins], fast=fast)))
        elif seg.output in node.outs:
            ref = None
            if reference_env is not None:
                ref = tuple(reference_env[v] for v in seg.inputs)
            env[seg.output] = bind_rule(assignment[seg], seg, [env[v] for v in seg.inputs],
                                        [env[v] for v in seg.consts()], ref)
    return [read(a) for a in graph.outvars]


def environment(graph: Graph, leaves: Sequence) -> dict:
    """Every variable's value for a plain evaluation of ``graph`` on ``leaves`` (the traced
    primitives: nothing here is differentiated by the rules' own vjp)."""
    env = dict(zip(graph.invars, leaves))
    read = lambda a: a.value if isinstance(a, Lit) else env[a]
    for node in graph.nodes:
        env.update(zip(node.outs, node.bind(*[read(a) for a in node.ins], fast=False)))
    return env

