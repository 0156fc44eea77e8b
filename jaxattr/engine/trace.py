"""Trace a pure function into a list of nodes the engine can classify and re-evaluate.

``jax.make_jaxpr`` gives a ``ClosedJaxpr`` whose equations may nest further jaxprs. Each equation
becomes a :class:`Node` over integer variable ids (unique across the whole program, bodies
included), so nothing after this module depends on jax's ``Var``/``Literal`` classes (which move
between jax releases). Nested jaxprs are handled by kind:

* plain calls (``jit``/``pjit``/``closed_call``, ``remat``/``checkpoint``) are inlined into the
  enclosing list;
* with ``bodies=True`` (the default; what rule-based methods and Guided Backprop/DeconvNet use),
  control flow keeps its node and carries its bodies as sub-:class:`Graph` s built by the same
  builder (:attr:`Node.bodies`): ``scan`` one (its body: ``consts + carry + xs -> carry + ys``),
  ``cond`` one per branch (``operands -> outputs``; the branch index is the node's first input).
  Body node names are prefixed by the control-flow node's module path (Flax's ``nn.RNN`` gives
  ``RNN_0/GRUCell_0.scan_fn/GRUCell_0/ir``), so selectors and error messages see full paths.
  ``while`` keeps no body: its trip count is dynamic, so no rule can be re-emitted inside it
  (the strict segmenter refuses an x-dependent one); with ``bodies=False`` control flow is opaque;
* custom-derivative calls (``custom_jvp_call``, ``custom_vjp_call``) are kept whole when they
  look elementwise (one output, every operand of the output's shape or a scalar: ``jax.nn.relu``
  is one), since they are activations; otherwise, with ``inline_custom=True`` (rule-based
  methods), their primal body is inlined — a user's ``custom_vjp`` linear layer becomes a dense
  layer the rules see (they replace its derivative anyway). With ``inline_custom=False`` (the
  gradient family, Guided Backprop, DeconvNet) they stay whole and keep their own derivative.

Taint analysis marks which variables depend on the explained input ``x`` *and* reach the
output other than through ``stop_gradient`` (which removes the dependence, as it does for
gradients): only those need a rule. It descends into bodies: a ``scan`` body's inputs are
tainted by the scan's consts, initial carry and xs, and a carry also by its own output on the
previous step (a fixpoint); a ``cond`` branch's by the operands. A ``cond``'s branch index
carries no derivative (the outputs are piecewise the taken branch), so what only computes the
index needs no rule. All graphs of one trace share one taint set (:attr:`Graph.tainted`).
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
    """A constant operand: a literal or a constant captured at trace time (``aval``: a jaxpr
    literal's abstract value, kept so that a body returning one keeps its dtype)."""

    value: Any
    aval: Any = None


Atom = Any  # int (variable id) or Lit


@dataclasses.dataclass(eq=False)
class Node:
    """One primitive application: ``outs = primitive.bind(*ins, **params)``."""

    primitive: Any
    params: dict
    ins: tuple  # of Atom
    outs: tuple  # of int
    name: str  # module path from the name stack ("" when the model gives none, e.g. NNX)
    index: Any = -1  # position in its graph; ``"7.2"`` (node 2 of node 7's body) inside bodies
    impl: Any = None  # a faster implementation (see jaxattr.engine.fast)
    #: sub-graphs of control flow (``scan``: its body; ``cond``: one per branch), else ``()``
    bodies: tuple = ()

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


def trace(fn: Callable, params, x, *, bodies: bool = True, inline_custom: bool = True) -> Graph:
    """Trace ``fn(params, x)`` for the shapes/dtypes of ``params`` and ``x`` (values are not used).

    ``bodies``: keep ``scan``/``cond`` bodies as sub-graphs (:attr:`Node.bodies`);
    ``inline_custom``: inline the primal body of a non-elementwise ``custom_jvp``/``custom_vjp``
    call (see the module docstring)."""
    spec = lambda a: jax.ShapeDtypeStruct(np.shape(a), jax.dtypes.result_type(a))
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(
        jax.tree_util.tree_map(spec, params), jax.tree_util.tree_map(spec, x)
    )
    n_params = len(jax.tree_util.tree_leaves(params))
    builder = _Builder(bodies, inline_custom)
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
    for sub in subgraphs(graph):
        sub.tainted = graph.tainted
    return graph


def trace_mode(strict: bool, has_rules: bool) -> dict:
    """:func:`trace`'s flags for a method: rule-based (``strict``) methods descend into
    ``scan``/``cond`` bodies and inline non-elementwise ``custom_jvp``/``custom_vjp`` calls (the
    rules replace their derivative); a lenient method with rules (Guided Backprop, DeconvNet)
    descends into control flow only, so a ReLU in a loop body gets its rule while custom
    derivatives stay; a lenient method without rules (the gradient family) keeps control flow
    opaque, so it re-binds the function's own primitives and derivatives."""
    if strict:
        return dict(bodies=True, inline_custom=True)
    return dict(bodies=has_rules, inline_custom=False)


def subgraphs(graph: Graph):
    """Every body graph nested in ``graph`` (depth first, in node order), not ``graph`` itself."""
    for node in graph.nodes:
        for body in node.bodies:
            yield body
            yield from subgraphs(body)


class _Builder:
    def __init__(self, bodies: bool = True, inline_custom: bool = True):
        self.nodes: list = []
        self.avals: dict = {}
        self._next = 0
        self.bodies = bodies
        self.inline_custom = inline_custom
        self._at = ""  # index prefix of the graph being built ("" at the top)

    def new(self, var) -> int:
        i = self._next
        self._next += 1
        self.avals[i] = var.aval
        return i

    def read(self, env, atom):
        if isinstance(atom, jcore.Literal):
            return Lit(atom.val, getattr(atom, "aval", None))
        return env[atom]

    def inline(self, jaxpr, env: dict, prefix: str) -> list:
        for eqn in jaxpr.eqns:
            ins = [self.read(env, a) for a in eqn.invars]
            name = "/".join(p for p in (prefix, str(eqn.source_info.name_stack)) if p)
            if self._inlines(eqn):
                inner = _sub_jaxpr(eqn)
                sub_env = dict(zip(inner.jaxpr.constvars, map(Lit, inner.consts)))
                sub_env.update(zip(inner.jaxpr.invars, ins))
                outs = self.inline(inner.jaxpr, sub_env, name)
                for v, o in zip(eqn.outvars, outs):
                    env[v] = o
                continue
            outs = tuple(self.new(v) for v in eqn.outvars)
            env.update(zip(eqn.outvars, outs))
            index = f"{self._at}{len(self.nodes)}" if self._at else len(self.nodes)
            node = Node(eqn.primitive, dict(eqn.params), tuple(ins), outs, name, index)
            node.impl = fast_impl(node, [self.avals.get(a) if not isinstance(a, Lit) else None
                                          for a in ins])
            if self.bodies and eqn.primitive.name == "scan":
                node.bodies = (self.subgraph(eqn.params["jaxpr"], name, f"{index}."),)
            elif self.bodies and eqn.primitive.name == "cond":
                node.bodies = tuple(self.subgraph(b, name, f"{index}[{i}].")
                                    for i, b in enumerate(eqn.params["branches"]))
            self.nodes.append(node)
        return [self.read(env, a) for a in jaxpr.outvars]

    def _inlines(self, eqn) -> bool:
        """Whether ``eqn`` is inlined: a plain call, or (``inline_custom``) a custom-derivative
        call that is not elementwise."""
        if _sub_jaxpr(eqn) is None:
            return False
        if eqn.primitive.name in _INLINE:
            return True
        return (self.inline_custom and eqn.primitive.name in _CUSTOM
                and not _looks_elementwise(eqn))

    def subgraph(self, closed, prefix: str, at: str) -> Graph:
        """``closed`` (a body jaxpr) as a :class:`Graph` of its own, with ids from this builder."""
        saved = self.nodes, self._at
        self.nodes, self._at = [], at
        try:
            invars = tuple(self.new(v) for v in closed.jaxpr.invars)
            env = dict(zip(closed.jaxpr.constvars, map(Lit, closed.consts)))
            env.update(zip(closed.jaxpr.invars, invars))
            outvars = self.inline(closed.jaxpr, env, prefix)
            return Graph(nodes=self.nodes, invars=invars, n_params=len(invars),
                         outvars=tuple(outvars), avals=self.avals, tainted=frozenset(),
                         out_tree=None)
        finally:
            self.nodes, self._at = saved


_CUSTOM = frozenset({"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"})


def _looks_elementwise(eqn) -> bool:
    """One output, and every operand of the output's shape or a scalar (an activation)."""
    if len(eqn.outvars) != 1:
        return False
    shape = eqn.outvars[0].aval.shape
    return all(getattr(a.aval, "shape", ()) in (shape, ()) for a in eqn.invars)


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
    tainted = _forward_taint(graph, set(graph.x_vars))
    # keep only what reaches the outputs other than through stop_gradient
    live = _live(graph, {a for a in graph.outvars if is_var(a)})
    return frozenset(tainted & live)


def _forward_taint(graph: Graph, tainted: set) -> set:
    """Every variable of ``graph`` and its bodies that depends on one in ``tainted``."""
    tainted = set(tainted)
    on = lambda atoms: [is_var(a) and a in tainted for a in atoms]
    for node in graph.nodes:
        if node.prim in _NO_TAINT:
            continue
        if node.prim == "scan" and node.bodies:
            (body,) = node.bodies
            n_c, n_k = node.params["num_consts"], node.params["num_carry"]
            flags = on(node.ins)
            while True:  # a carry is tainted if its initial value or its output on a step is
                inner = _forward_taint(body, {v for v, t in zip(body.invars, flags) if t})
                outs = [is_var(a) and a in inner for a in body.outvars]
                carry = [f or o for f, o in zip(flags[n_c:n_c + n_k], outs[:n_k])]
                if carry == flags[n_c:n_c + n_k]:
                    break
                flags[n_c:n_c + n_k] = carry
            tainted |= inner
            tainted.update(o for o, t in zip(node.outs, outs) if t)
        elif node.prim == "cond" and node.bodies:
            flags = on(node.ins[1:])  # the branch index carries no derivative
            for body in node.bodies:
                inner = _forward_taint(body, {v for v, t in zip(body.invars, flags) if t})
                tainted |= inner
                tainted.update(o for o, a in zip(node.outs, body.outvars)
                               if is_var(a) and a in inner)
        elif any(on(node.ins)):
            tainted.update(node.outs)
    return tainted


def _live(graph: Graph, live: set) -> set:
    """Every variable of ``graph`` and its bodies that ``live`` (variables) depend on, other than
    through ``stop_gradient`` or a ``cond``'s branch index."""
    live = set(live)
    for node in reversed(graph.nodes):
        if node.prim in _NO_TAINT or not any(o in live for o in node.outs):
            continue
        if node.prim == "scan" and node.bodies:
            (body,) = node.bodies
            n_c, n_k = node.params["num_consts"], node.params["num_carry"]
            wanted = [o in live for o in node.outs]
            while True:  # a carry's output is live if the next step reads its input
                inner = _live(body, {a for a, w in zip(body.outvars, wanted) if w and is_var(a)})
                reads = [v in inner for v in body.invars]
                carry = [w or r for w, r in zip(wanted[:n_k], reads[n_c:n_c + n_k])]
                if carry == wanted[:n_k]:
                    break
                wanted[:n_k] = carry
            live |= inner
            live.update(a for a, r in zip(node.ins, reads) if r and is_var(a))
        elif node.prim == "cond" and node.bodies:
            for body in node.bodies:
                inner = _live(body, {a for a, o in zip(body.outvars, node.outs)
                                     if o in live and is_var(a)})
                live |= inner
                live.update(a for a, v in zip(node.ins[1:], body.invars) if v in inner and is_var(a))
        else:
            live.update(a for a in node.ins if is_var(a))
    return live


def evaluate(graph: Graph, leaves: Sequence, bind_node: Callable | None = None):
    """Plain re-evaluation of the graph (``bind_node(node, vals) -> outs`` may override nodes)."""
    env = dict(zip(graph.invars, leaves))
    read = lambda a: a.value if isinstance(a, Lit) else env[a]
    for node in graph.nodes:
        vals = [read(a) for a in node.ins]
        outs = bind_node(node, vals) if bind_node else node.bind(*vals)
        env.update(zip(node.outs, outs))
    return [read(a) for a in graph.outvars]
