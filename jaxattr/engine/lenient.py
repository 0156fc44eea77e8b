"""Lenient segmentation: only ReLUs and max pools, for the methods that need no other rule.

The gradient family (Gradient, Gradient × Input, Integrated Gradients, SmoothGrad) is the true
derivative, and Guided Backprop and DeconvNet change the derivative of ReLUs only. None of them
needs :func:`jaxattr.engine.segment.segment`'s strict classification, which refuses every
x-dependent operation no rule covers (attention products, normalisation, ``scan``, …). Here the
traced graph keeps every node as traced (control flow, ``custom_jvp``/``custom_vjp`` calls and
checkpointed blocks are re-bound whole), so any differentiable pure function runs, and only two
kinds of segment are cut out:

* ``activation``: a **ReLU**, i.e. ``jax.nn.relu`` (its ``custom_jvp_call``) or
  ``max(x, 0)``/``max(0, x)`` with a literal zero (:func:`is_relu`). Other activations — leaky
  ReLU, PReLU, ReLU6, ELU, GELU, tanh, sigmoid — are not ReLUs: Guided Backprop and DeconvNet
  pass their true derivative, as Captum (which hooks ``nn.ReLU`` modules only) and the papers
  (Zeiler & Fergus 2014, Springenberg et al. 2015 modify the ReLU) do.
  A ``max(v, 0)`` whose value only reaches a ``sqrt``/``rsqrt`` (through ``add``, casts and
  broadcasts) is not an activation but a numerical guard: Flax's LayerNorm, GroupNorm and
  BatchNorm clamp the variance at 0 before ``rsqrt(var + ε)`` (:func:`clamps_a_root`).
* ``maxpool``: ``reduce_window_max`` and ``reduce_max``, so their cotangent takes the fast
  winner-take-all path (:class:`jaxattr.rules.pooling.WinnerTakeAll`). It is the derivative
  wherever the maximum is unique; on a tie it goes to the first maximum, as ``jax.grad`` of
  ``reduce_window_max`` and PyTorch do, whichever way the model writes the pool (``jax.grad``
  of a reshape-and-``max`` would split it equally: another subgradient).

Control flow traced with bodies (:func:`jaxattr.engine.trace.trace`, ``bodies=True``: what
Guided Backprop and DeconvNet use) is searched too: a ReLU inside a ``scan`` body or a ``cond``
branch is cut out like any other, and the rewriter re-emits the loop or switch around it. A ReLU
inside an opaque node (a ``while`` body, a ``custom_jvp``/``custom_vjp`` function, any body of a
graph traced with ``bodies=False``, as the gradient family does) is not cut out: there the
derivative stays the true one.
"""

from __future__ import annotations

from .segment import Segment, activation_name, is_zero
from .trace import Graph, Lit, Node, is_var

__all__ = ["clamps_a_root", "is_relu", "is_relu_segment", "lenient_segments"]


def is_relu(node: Node, tainted) -> bool:
    """Whether ``node`` is a ReLU of its one x-dependent input: ``jax.nn.relu`` or ``max`` with
    a literal zero operand."""
    t_ins = [a for a in node.ins if is_var(a) and a in tainted]
    if len(t_ins) != 1 or len(node.outs) != 1:
        return False
    if node.prim == "custom_jvp_call":
        return len(node.ins) == 1 and (activation_name(node) == "relu" or _inlined_relu(node))
    if node.prim == "max" and len(node.ins) == 2:
        return any(is_zero(a) for a in node.ins)
    return False


def _inlined_relu(node: Node) -> bool:
    """A ``custom_jvp`` function whose body is ``max(x, 0)`` alone: ``jax.nn.relu`` traced under
    ``jax.disable_jit`` (its inner ``jit`` is gone)."""
    inner = node.params.get("call_jaxpr")
    eqns = getattr(getattr(inner, "jaxpr", inner), "eqns", ())
    return (len(eqns) == 1 and eqns[0].primitive.name == "max"
            and any(is_zero(Lit(a.val)) for a in eqns[0].invars if hasattr(a, "val")))


def is_relu_segment(segment: Segment) -> bool:
    """Whether ``segment`` is one ReLU node (see :func:`is_relu`)."""
    return (segment.kind == "activation" and len(segment.nodes) == 1
            and is_relu(segment.nodes[0], set(segment.inputs)))


_TO_ROOT = frozenset({"add", "sub", "convert_element_type", "broadcast_in_dim", "reshape", "squeeze",
                      "expand_dims", "copy", "copy_p"})


def clamps_a_root(graph: Graph, node: Node, users: dict) -> bool:
    """Whether every use of ``node``'s output, followed through ``add``/``sub``, casts and
    broadcasts, ends in ``sqrt``/``rsqrt`` (the ``max(0, E[x²] − E[x]²)`` of a normalisation)."""
    outs = {a for a in graph.outvars if is_var(a)}
    todo, seen, reached = [node.outs[0]], set(), False
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        if v in outs or not users.get(v):
            return False
        for user in users[v]:
            if user.prim in ("sqrt", "rsqrt"):
                reached = True
            elif user.prim in _TO_ROOT and len(user.outs) == 1:
                todo.append(user.outs[0])
            else:
                return False
    return reached


def lenient_segments(graph: Graph) -> list:
    """ReLU ``activation`` and max-pool (``reduce_window_max``, ``reduce_max``) ``maxpool``
    segments of ``graph`` and its bodies, one node each, in evaluation order; every other node
    keeps its ordinary derivative. Never raises."""
    segments = _lenient(graph)
    for i, seg in enumerate(segments):
        seg.index = i
    return segments


def _lenient(graph: Graph) -> list:
    tainted = graph.tainted
    users = graph.consumers()
    segments = []
    for node in graph.nodes:
        if node.bodies:
            segments.extend(seg for body in node.bodies for seg in _lenient(body))
            continue
        t_ins = list(dict.fromkeys(a for a in node.ins if is_var(a) and a in tainted))
        if not t_ins or node.outs[0] not in tainted:
            continue
        if is_relu(node, tainted) and not (node.prim == "max" and clamps_a_root(graph, node, users)):
            kind = "activation"
        elif node.prim in ("reduce_window_max", "reduce_max") and len(node.ins) == 1:
            kind = "maxpool"
        else:
            continue
        segments.append(Segment(kind, [node], tuple(t_ins), output=node.outs[0], name=node.name))
    return segments
