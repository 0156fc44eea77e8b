"""Trace a pure function into a flat list of nodes the engine can classify and re-evaluate.

``jax.make_jaxpr`` gives a ``ClosedJaxpr`` whose equations may nest further jaxprs (``jit`` /
``pjit`` / ``closed_call``). The engine wants one flat, topologically ordered list, so nested calls
are inlined here. Each equation becomes a :class:`Node` over integer variable ids, so nothing after
this module depends on jax's ``Var``/``Literal`` classes (which move between jax releases).
Custom-derivative calls (``custom_jvp_call``, ``custom_vjp_call``) are kept whole: they are the
activations (``jax.nn.relu`` is one) and are re-bound as they are.

Taint analysis marks which variables depend on the explained input ``x`` *and* reach the
output other than through ``stop_gradient`` (which removes the dependence, as it does for
gradients): only those need a rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.extend import core as jcore

from .fast import fast_impl

# Primitives whose jaxpr is inlined (a plain call: no custom derivative, no control flow).
# ``jax.checkpoint``/``jax.remat`` bind ``remat2`` (its memory policy is dropped inside the
# attribution program; the values are the same).
_INLINE = frozenset({"jit", "pjit", "closed_call", "core_call", "remat", "remat2", "checkpoint"})


@dataclasses.dataclass(frozen=True, eq=False)
class Lit:
    """A constant operand: a literal or a constant captured at trace time."""

    value: Any


Atom = Any  # int (variable id) or Lit


@dataclasses.dataclass(eq=False)
class Node:
    """One primitive application: ``outs = primitive.bind(*ins, **params)``."""

    primitive: Any
    params: dict
    ins: tuple  # of Atom
    outs: tuple  # of int
    name: str  # module path from the name stack ("" when the model gives none, e.g. NNX)
    index: int = -1
    impl: Any = None  # a faster implementation (see jaxattr.engine.fast)

    @property
    def prim(self) -> str:
        return self.primitive.name

    def bind(self, *vals, fast: bool = True):
        """Apply the node, through :attr:`impl` when it has one. ``fast=False`` leaves out an
        implementation that is a ``jax.custom_vjp`` (binding the traced primitive instead):
        forward-mode autodiff cannot enter a ``custom_vjp``, so only values the explanation's own
        vjp differentiates may go through one."""
        if self.impl is not None and (fast or not isinstance(self.impl, jax.custom_vjp)):
            return (self.impl(*vals),)
        bind_params = self.primitive.get_bind_params(self.params)
        out = self.primitive.bind(*vals, **bind_params)
        return tuple(out) if self.primitive.multiple_results else (out,)


@dataclasses.dataclass(eq=False)
class Graph:
    """A flat program: ``outputs = f(*params_leaves, *x_leaves)``."""

    nodes: list
    invars: tuple  # ids of the flattened (params, x) leaves, in order
    n_params: int  # how many leading invars are parameters
    outvars: tuple  # of Atom
    avals: dict  # id -> ShapedArray
    tainted: frozenset  # ids that depend on x
    out_tree: Any

    @property
    def x_vars(self) -> tuple:
        return self.invars[self.n_params:]

    def consumers(self) -> dict:
        """Map var id -> list of nodes that read it."""
        users: dict = {}
        for node in self.nodes:
            for a in node.ins:
                if not isinstance(a, Lit):
                    users.setdefault(a, []).append(node)
        return users


def is_var(atom) -> bool:
    return not isinstance(atom, Lit)


def trace(fn: Callable, params, x) -> Graph:
    """Trace ``fn(params, x)`` for the shapes/dtypes of ``params`` and ``x`` (values are not used)."""
    spec = lambda a: jax.ShapeDtypeStruct(np.shape(a), jax.dtypes.result_type(a))
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(
        jax.tree_util.tree_map(spec, params), jax.tree_util.tree_map(spec, x)
    )
    n_params = len(jax.tree_util.tree_leaves(params))
    builder = _Builder()
    invars = tuple(builder.new(v) for v in closed.jaxpr.invars)
    env = dict(zip(closed.jaxpr.invars, invars))
    for v, c in zip(closed.jaxpr.constvars, closed.consts):
        env[v] = Lit(c)
    outvars = builder.inline(closed.jaxpr, env, "")
    graph = Graph(
        nodes=builder.nodes,
        invars=invars,
        n_params=n_params,
        outvars=tuple(outvars),
        avals=builder.avals,
        tainted=frozenset(),
        out_tree=jax.tree_util.tree_structure(out_shape),
    )
    graph.tainted = _taint(graph)
    return graph


class _Builder:
    def __init__(self):
        self.nodes: list = []
        self.avals: dict = {}
        self._next = 0

    def new(self, var) -> int:
        i = self._next
        self._next += 1
        self.avals[i] = var.aval
        return i

    def read(self, env, atom):
        if isinstance(atom, jcore.Literal):
            return Lit(atom.val)
        return env[atom]

    def inline(self, jaxpr, env: dict, prefix: str) -> list:
        for eqn in jaxpr.eqns:
            ins = [self.read(env, a) for a in eqn.invars]
            name = "/".join(p for p in (prefix, str(eqn.source_info.name_stack)) if p)
            if eqn.primitive.name in _INLINE and _sub_jaxpr(eqn) is not None:
                inner = _sub_jaxpr(eqn)
                sub_env = dict(zip(inner.jaxpr.constvars, map(Lit, inner.consts)))
                sub_env.update(zip(inner.jaxpr.invars, ins))
                outs = self.inline(inner.jaxpr, sub_env, name)
                for v, o in zip(eqn.outvars, outs):
                    env[v] = o
                continue
            outs = tuple(self.new(v) for v in eqn.outvars)
            env.update(zip(eqn.outvars, outs))
            node = Node(eqn.primitive, dict(eqn.params), tuple(ins), outs, name, len(self.nodes))
            node.impl = fast_impl(node, [self.avals.get(a) if not isinstance(a, Lit) else None
                                          for a in ins])
            self.nodes.append(node)
        return [self.read(env, a) for a in jaxpr.outvars]


def _sub_jaxpr(eqn):
    for key in ("jaxpr", "call_jaxpr"):
        inner = eqn.params.get(key)
        if isinstance(inner, jcore.ClosedJaxpr):
            return inner
        if isinstance(inner, jcore.Jaxpr):
            return jcore.ClosedJaxpr(inner, ())
    return None


_NO_TAINT = frozenset({"stop_gradient", "iota", "rng_bit_generator", "random_bits", "random_seed",
                       "random_wrap", "random_unwrap", "threefry2x32"})


def _taint(graph: Graph) -> frozenset:
    tainted = set(graph.x_vars)
    for node in graph.nodes:
        if node.prim in _NO_TAINT:
            continue
        if any(is_var(a) and a in tainted for a in node.ins):
            tainted.update(node.outs)
    # keep only what reaches the outputs other than through stop_gradient
    live = {a for a in graph.outvars if is_var(a)}
    for node in reversed(graph.nodes):
        if node.prim not in _NO_TAINT and any(o in live for o in node.outs):
            live.update(a for a in node.ins if is_var(a))
    return frozenset(tainted & live)


def evaluate(graph: Graph, leaves: Sequence, bind_node: Callable | None = None):
    """Plain re-evaluation of the graph (``bind_node(node, vals) -> outs`` may override nodes)."""
    env = dict(zip(graph.invars, leaves))
    read = lambda a: a.value if isinstance(a, Lit) else env[a]
    for node in graph.nodes:
        vals = [read(a) for a in node.ins]
        outs = bind_node(node, vals) if bind_node else node.bind(*vals)
        env.update(zip(node.outs, outs))
    return [read(a) for a in graph.outvars]
