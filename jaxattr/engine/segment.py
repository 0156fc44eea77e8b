"""Segment a traced graph into the pieces rules attach to.

Every node that depends on the explained input is put in exactly one class:

============  =====================================================================  ===========
kind          what it matches                                                        default VJP
============  =====================================================================  ===========
``dense``     ``dot_general`` with one x-dependent operand, plus the chain of        gradient
``conv``      ``conv_general_dilated`` elementwise affine ops with constant operands gradient
              that follows it (bias add, inference-mode batch norm: ``sub``, ``mul``,
              ``add``, ``div``, ``neg``). The whole chain is one layer
              ``z = a ⊙ lin(x, W) + c``, so rules see the folded layer.
``activation`` a connected region of elementwise ops rooted at one x-dependent        gradient
              tensor with one output (``relu``, PReLU, GELU, tanh, …)
``maxpool``   ``reduce_window_max``, ``reduce_max``, ``max``/``min`` of two           gradient
              x-dependent tensors
``sum``       ``reduce_sum``, ``reduce_window_sum`` (average pooling), ``add``/``sub``  gradient
              of two x-dependent tensors (skip connections), with the affine chain
              after it (an average pool's division: rules see the mean)
``scale``     a lone elementwise affine op with a constant operand                   gradient
``bilinear``  ``mul`` of two different x-dependent tensors (gates, GLU) that no        none: a
              activation region covers (``x·sigmoid(x)`` stays an activation), and  rule is needed
              ``dot_general`` of two different x-dependent tensors (attention's
              ``QKᵀ`` and ``AV``); ``held`` lists the operands that are softmax
              outputs (attention weights)
``normalise`` such a ``mul`` whose second factor is computed from the first through    none: a
              a reduction, ``x ⊙ rsqrt(mean(x²) + ε)`` (LayerNorm, RMSNorm), or a    rule is needed
              ``div`` of the first by such a root (``(x − μ) / sqrt(σ² + ε)``, ``x / ‖x‖``);
              inputs ``(signal, scale)``
``softmax``   ``exp(z − max z) / Σ exp(z − max z)`` over an axis (``jax.nn.softmax``,    none: a
              Flax attention, masked with ``where=``, the shift stop-gradient'ed or  rule is needed
              not): the ``exp``, the ``sum``, the ``div`` and the max shift; input
              ``z``. At the model's output it is refused ("explain the logits")
plumbing      reshape, transpose, broadcast, slicing, concatenation, padding, …      gradient
============  =====================================================================  ===========

Plumbing nodes form no segment: every method passes through them with their ordinary VJP.
Anything else that depends on ``x`` raises :class:`UnsupportedPrimitiveError`, naming the
primitive and the module path; no rule is ever silently skipped.

**Control flow.** A ``scan`` or ``cond`` node that depends on ``x`` is not a segment itself: the
segmenter recurses into its bodies (:attr:`~jaxattr.engine.trace.Node.bodies`), whose segments are
ordinary segments of the one list :func:`segment` returns, placed where the node is evaluated
(a GRU cell's dense layers, gates and products inside ``nn.RNN``'s scan, named by their full
module path). :func:`jaxattr.engine.rewrite.run` re-emits the loop or switch with those rules in
its body. Numbering (``index``, ``is_first``, ``is_last``) runs over that whole list, in
evaluation order of the trace, so the first linear layer may sit inside a body. A
body segment's input that comes from outside the body (a carry, an ``xs`` slice) is never
marked non-negative. An x-dependent ``while`` loop raises (its trip count is dynamic: reverse-mode
autodiff cannot enter it either); one independent of ``x`` is a constant like any other.
An uncovered primitive inside a body raises with its full module path.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax.numpy as jnp
import numpy as np

from .trace import Graph, Lit, Node, is_var

LINEAR_KINDS = ("dense", "conv")
KINDS = LINEAR_KINDS + ("activation", "maxpool", "sum", "scale", "bilinear", "normalise",
                        "softmax")

PLUMBING = frozenset({
    "reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims", "slice", "dynamic_slice",
    "concatenate", "stack", "unstack", "pad", "rev", "copy", "copy_p", "convert_element_type",
    "reduce_precision",
    "gather", "split", "select_and_gather_add", "device_put", "sharding_constraint",
    "mesh_cast", "reshard", "optimization_barrier", "tile", "scatter", "dynamic_update_slice",
})
#: where a plumbing primitive reads integer positions (gather indices, slice starts): an
#: x-dependent one moves *which* values are read, which no rule can credit
INDEX_OPERANDS = {"gather": slice(1, 2), "dynamic_slice": slice(1, None), "scatter": slice(1, 2),
                  "scatter-add": slice(1, 2), "dynamic_update_slice": slice(2, None)}
AFFINE_CONST = frozenset({"add", "sub", "mul", "div", "neg", "add_any"})
ELEMENTWISE = frozenset({
    "add", "sub", "mul", "div", "neg", "max", "min", "abs", "sign", "exp", "exp2", "log", "log1p",
    "expm1", "tanh", "logistic", "erf", "erfc", "erf_inv", "sin", "cos", "tan", "sqrt", "rsqrt",
    "cbrt", "integer_pow", "pow", "square", "floor", "ceil", "round", "is_finite", "not", "and",
    "or", "xor", "ge", "gt", "le", "lt", "eq", "ne", "select_n", "clamp", "atan2", "nextafter",
    "convert_element_type", "copy", "copy_p", "custom_jvp_call", "custom_vjp_call",
    "custom_vjp_call_jaxpr", "add_any", "stop_gradient", "sinh", "cosh", "asinh", "acosh",
    "atanh", "atan", "asin", "acos", "imag", "real", "square",
})
SUMS = frozenset({"reduce_sum", "reduce_window_sum", "cumsum"})
LINEAR_PRIMS = frozenset({"dot_general", "conv_general_dilated"})
#: plumbing that a linear layer absorbs between its product and its bias: the same values in
#: another layout (``jax.vmap`` of a per-example layer leaves a ``transpose``, Equinox's
#: ``Conv2d`` a ``squeeze``), so ``z = a ⊙ P(lin(x, W)) + c`` is still one folded layer
RELAYOUT = frozenset({"transpose", "reshape", "squeeze", "expand_dims", "broadcast_in_dim",
                      "copy", "copy_p"})
MAXES = frozenset({"reduce_window_max", "reduce_max", "reduce_window_min", "reduce_min"})
#: reductions: a product one of whose factors passes through one is a normalisation
_REDUCTIONS = SUMS | MAXES | {"reduce_prod", "argmax", "argmin"}
#: reductions that normalise over the class axis when they follow the last linear layer (the
#: windowed ones have no ``axes`` and never match there)
_OUTPUT_REDUCTIONS = _REDUCTIONS | {"cumlogsumexp", "cummax", "cummin"}


class UnsupportedPrimitiveError(ValueError):
    """An x-dependent primitive that no rule covers."""


@dataclasses.dataclass(eq=False)
class Segment:
    """A piece of the graph a rule is attached to: ``output = f(*inputs; consts)``."""

    kind: str
    nodes: list
    inputs: tuple  # x-dependent input var ids, in order
    output: int = -1
    name: str = ""
    index: int = 0  # position among segments of the same family (linear layers counted apart)
    is_first: bool = False  # first linear layer from the input
    is_last: bool = False  # last linear layer before the output
    nonneg_input: bool = False  # input known to be >= 0 (after a ReLU / max pool of ReLUs)
    #: per input of a ``bilinear`` segment, whether it is a gate: a ``logistic`` (sigmoid)
    #: output, possibly through elementwise affine ops with constants and relayouts (``1 − z``)
    gates: tuple = ()
    held: tuple = ()  # bilinear: positions of the inputs that are softmax outputs (A of A·V)

    @property
    def family(self) -> str:
        return "linear" if self.kind in LINEAR_KINDS else self.kind

    @property
    def core(self) -> Node:
        """The node that defines the segment: a linear layer's ``dot_general``/``conv`` (after a
        zero ``pad`` it absorbed), else the first node."""
        if self.family == "linear":
            return next(n for n in self.nodes if n.prim in LINEAR_PRIMS)
        return self.nodes[0]

    @property
    def primitive(self) -> str:
        return self.core.prim

    def consts(self) -> tuple:
        """Variables the segment reads that it neither produces nor takes as x-dependent input
        (weights, biases, batch-norm statistics). Literals are read in place."""
        produced = {o for n in self.nodes for o in n.outs}
        out = []
        for n in self.nodes:
            for a in n.ins:
                if is_var(a) and a not in produced and a not in self.inputs and a not in out:
                    out.append(a)
        return tuple(out)

    @property
    def reciprocal(self) -> bool:
        """A ``normalise`` segment that divides its signal by the scale (``s / sqrt(σ² + ε)``,
        ``x / ‖x‖``) instead of multiplying by it."""
        return self.kind == "normalise" and self.core.prim == "div"

    @property
    def elementwise(self) -> bool:
        """A bilinear segment that multiplies elementwise (``mul``), not a contraction."""
        return self.kind == "bilinear" and self.core.prim == "mul"

    def describe(self) -> str:
        return f"{self.kind} '{self.name or '<unnamed>'}' ({', '.join(n.prim for n in self.nodes)})"


def _where(node: Node) -> str:
    return f"at module path '{node.name}'" if node.name else "(no module path: the model gives no names)"


def segment(graph: Graph) -> list:
    """Classify every x-dependent node of ``graph`` and of its bodies; return segments in
    evaluation order (by their last node; a body's segments where its node is evaluated)."""
    segments = _segment_graph(graph)
    _number_linear(segments)
    top = {o for n in graph.nodes for o in n.outs}
    _refuse_output_normalisation([s for s in segments if s.output in top], graph)
    return segments


def _number_linear(segments) -> None:
    """Each linear segment's position among them (``index``, ``is_first``, ``is_last``)."""
    linear = [s for s in segments if s.kind in LINEAR_KINDS]
    for i, seg in enumerate(linear):
        seg.index = i
        seg.is_first = i == 0
        seg.is_last = i == len(linear) - 1


def _in_evaluation_order(graph: Graph, segments, nested: dict) -> list:
    """``segments`` of ``graph`` (by the node producing their output) with ``nested[id(node)]``,
    the segments of a control-flow node's bodies, where that node is evaluated."""
    made = {o: i for i, n in enumerate(graph.nodes) for o in n.outs}
    by_node: dict = {}
    for seg in segments:
        by_node.setdefault(made[seg.output], []).append(seg)
    out = []
    for i, node in enumerate(graph.nodes):
        out.extend(nested.get(id(node), ()))
        out.extend(by_node.get(i, ()))
    return out


def _segment_graph(graph: Graph) -> list:
    tainted = graph.tainted
    users = graph.consumers()
    n_users = lambda v: len(users.get(v, ())) + sum(1 for a in graph.outvars if a == v)
    owner: dict = {}  # var -> segment that produced it
    rooted: dict = {}  # var -> activation regions grown from it
    segments: list = []
    nested: dict = {}  # id(control-flow node) -> segments of its bodies
    producer = {o: n for n in graph.nodes for o in n.outs}
    softmax_of = _softmaxes(graph, producer, users)  # id(node) -> its softmax segment

    def tainted_ins(node):
        return [a for a in node.ins if is_var(a) and a in tainted]

    for node in graph.nodes:
        t_ins = tainted_ins(node)
        if not t_ins or not any(o in tainted for o in node.outs):
            continue
        prim = node.prim
        uniq = list(dict.fromkeys(t_ins))

        # 0. control flow: its bodies are segmented (the node itself re-emitted by the rewriter)
        if node.bodies:
            nested[id(node)] = [seg for body in node.bodies for seg in _segment_graph(body)]
            continue
        if prim == "while":
            raise UnsupportedPrimitiveError(
                f"'while' {_where(node)} carries a value that depends on the explained input x. A "
                "while loop (jax.lax.while_loop, or fori_loop with traced bounds) has a trip count "
                "known only at run time, so no rule can be re-emitted inside it, and jax.grad "
                "cannot reverse-differentiate it either. Write the loop with jax.lax.scan, or "
                "jax.lax.fori_loop with static (Python int) bounds, which lowers to a scan.")
        # 0b. a node of a softmax recognised beforehand (its ``exp``, ``sum``, ``div``, shift)
        if id(node) in softmax_of:
            seg = softmax_of[id(node)]
            if not seg.nodes:
                seg.name = node.name
                segments.append(seg)
            seg.nodes.append(node)
            for o in node.outs:
                owner[o] = seg
            continue

        # 1. extend an affine chain: `z = lin(x, W)` followed by `z + b`, `z * s`, ... (also after a
        #    sum: an average pool is a window sum and a division, and rules see the mean)
        if prim in AFFINE_CONST and len(uniq) == 1:
            seg = owner.get(uniq[0])
            if (seg is not None and seg.kind in LINEAR_KINDS + ("sum",) and seg.output == uniq[0]
                    and n_users(uniq[0]) == 1 and _affine_operand_ok(node, uniq[0])):
                seg.nodes.append(node)
                seg.output = node.outs[0]
                owner[node.outs[0]] = seg
                continue

        #    A linear layer's output in another layout (transpose, reshape, ...) before its bias
        #    is still that layer: the plumbing joins it (dropped again if no affine op follows).
        if prim in RELAYOUT and len(uniq) == 1:
            seg = owner.get(uniq[0])
            if (seg is not None and seg.kind in LINEAR_KINDS and seg.output == uniq[0]
                    and n_users(uniq[0]) == 1 and _relayout_only(seg.nodes[seg.nodes.index(seg.core):])
                    and _same_size(node, graph)):
                seg.nodes.append(node)
                seg.output = node.outs[0]
                owner[node.outs[0]] = seg
                continue

        # 2. grow an elementwise region (activation) whose vars cover all x-dependent inputs
        if prim in ELEMENTWISE and _elementwise_shape(node, graph) and _elementwise_call(node):
            region = _region_of(uniq, owner, rooted)
            # an affine op on an activation's output that is also read elsewhere (a gate ``z``
            # used as ``z * h`` and ``1 - z``) starts its own (scale) segment: the activation
            # keeps one output
            if (region is not None and prim in AFFINE_CONST and len(uniq) == 1
                    and uniq[0] not in region.inputs and n_users(uniq[0]) > 1
                    and _affine_operand_ok(node, uniq[0])):
                region = None
            if region is not None:
                region.nodes.append(node)
                for o in node.outs:
                    owner[o] = region
                continue

        # 3. start a new segment
        seg = None
        if prim == "dot_general" and len(uniq) == 2:
            seg = Segment("bilinear", [node], tuple(uniq))
        elif prim in ("dot_general", "conv_general_dilated"):
            both = len(t_ins) > 1  # x·xᵀ: one tensor on both sides
            if both or len(uniq) != 1 or (prim == "conv_general_dilated" and node.ins[0] not in tainted):
                raise UnsupportedPrimitiveError(
                    f"'{prim}' {_where(node)} multiplies an x-dependent tensor by itself (or uses x "
                    "as a convolution kernel); no attribution rule covers that. Make one operand a "
                    "parameter, or wrap one side in jax.lax.stop_gradient.")
            seg = Segment("dense" if prim == "dot_general" else "conv", [node], tuple(uniq))
            pad = producer.get(uniq[0])
            if pad is not None and _zero_pad(pad, graph, producer) and n_users(uniq[0]) == 1:
                # a constant zero pad feeding the layer is part of it: the padded positions
                # are not inputs, so no rule may send relevance there
                seg.nodes.insert(0, pad)
                seg.inputs = (pad.ins[0],)
        elif any(is_var(a) and a in tainted for a in node.ins[INDEX_OPERANDS.get(prim, slice(0))]):
            raise UnsupportedPrimitiveError(
                f"'{prim}' {_where(node)} reads at positions computed from the explained input x "
                "(indices from a rounded or cast value); no rule can credit the change of which "
                "values are read. Compute the positions from something other than x, or wrap "
                "them in jax.lax.stop_gradient for LRP to take them as constants (DeepLIFT "
                "refuses that too: they differ at the reference).")
        elif prim in PLUMBING or (prim == "select_n" and node.ins[0] not in tainted):
            continue
        elif prim in AFFINE_CONST and len(uniq) == 1 and _affine_operand_ok(node, uniq[0]):
            seg = Segment("scale", [node], tuple(uniq))
        elif prim in SUMS or prim == "scatter-add" or (prim in ("add", "sub", "add_any")
                                                      and len(uniq) > 1):
            seg = Segment("sum", [node], tuple(uniq))
        elif prim in MAXES or (prim in ("max", "min") and len(uniq) > 1):
            seg = Segment("maxpool", [node], tuple(uniq))
        elif prim == "mul" and len(uniq) == 2 and _broadcast_shape(node, graph):
            scaled = _normalised(uniq, producer, graph)
            seg = (Segment("normalise", [node], scaled) if scaled
                   else Segment("bilinear", [node], tuple(uniq)))
        elif (prim == "div" and len(uniq) == 2 and _broadcast_shape(node, graph)
              and _root_of(node.ins[1], producer, graph)
              and _normalised(tuple(node.ins), producer, graph) == tuple(node.ins)):
            # the signal divided by its scale: s / sqrt(var(s) + ε), x / ‖x‖
            seg = Segment("normalise", [node], tuple(node.ins))
        elif len(uniq) == 1 and _elementwise_shape(node, graph) and _softmax_call(node):
            seg = Segment("softmax", [node], tuple(uniq))
        elif prim in ELEMENTWISE and _elementwise_shape(node, graph) and _elementwise_call(node):
            if len(uniq) > 1:
                raise UnsupportedPrimitiveError(
                    f"'{prim}' {_where(node)} combines two x-dependent tensors non-linearly; no rule "
                    "covers that. If this is a softmax, explain the logits instead (pass the function "
                    "before the softmax); otherwise restructure it or register a rule.")
            seg = Segment("activation", [node], tuple(uniq))
        else:
            hint = (" If this is a softmax or normalisation of the output, explain the logits "
                    "instead." if prim in ("div", "reduce_max", "exp", "argmax") else "")
            what = ("combines several x-dependent tensors" if len(uniq) > 1
                    else "depends on the explained input x")
            raise UnsupportedPrimitiveError(
                f"no attribution rule covers primitive '{prim}' {_where(node)}, which {what}.{hint} "
                "Supported: dense/conv layers, elementwise activations, max/sum/average pooling, "
                "sums, products of x-dependent tensors (gates, attention's QK^T and AV), softmax "
                "inside the model, LayerNorm/RMSNorm, scan/cond/fori_loop with static bounds, and "
                "linear plumbing (reshape, transpose, slicing, ...). "
                "Use jax.lax.stop_gradient on parts that should not be explained, or rewrite the "
                "operation with supported primitives.")
        seg.name = node.name
        seg.output = node.outs[0]
        segments.append(seg)
        if seg.kind == "activation":
            rooted.setdefault(uniq[0], []).append(seg)
        for o in node.outs:
            owner[o] = seg

    _finish(segments, graph, users)
    _mark_held(segments, producer, graph)
    return _in_evaluation_order(graph, segments, nested)


#: ops between a softmax's ``exp`` and its ``sum``, or its ``sum`` and ``div``: the same values
#: in another layout, or masked by a constant predicate (``jax.nn.softmax(where=...)``)
_SOFTMAX_PLUMBING = frozenset({"broadcast_in_dim", "reshape", "squeeze", "expand_dims",
                               "convert_element_type", "copy", "copy_p", "select_n", "transpose"})
#: ops of the max shift ``broadcast(stop_gradient(max(−inf, reduce_max(z))))``
_SHIFT = frozenset({"reduce_max", "max", "broadcast_in_dim", "reshape", "expand_dims",
                    "stop_gradient", "convert_element_type", "copy", "copy_p", "transpose"})
#: layout changes through which the shift's maximum may be taken (Flax NNX transposes the
#: scores after taking it)
_SAME_VALUES = frozenset({"transpose", "reshape", "convert_element_type", "copy", "copy_p"})


def _softmaxes(graph: Graph, producer: dict, users: dict) -> dict:
    """Softmaxes over an axis, recognised before segmentation: ``div(e, B(Σ M(e)))`` with
    ``e = exp(u)``, ``M``/``B`` layout changes or constant masks (:data:`_SOFTMAX_PLUMBING`) and
    ``u = z − shift`` where the shift is ``z``'s own maximum (through ``stop_gradient`` or not),
    or ``u = z``. Returns ``id(node) -> Segment`` (kind ``softmax``, input ``z``, nodes still
    empty: the main loop fills them in order). A candidate whose inner values are read outside
    it is left alone (its pieces then meet the usual rules, or the usual error)."""
    tainted = graph.tainted
    t_var = lambda a: is_var(a) and a in tainted
    found: dict = {}

    def back(v, allowed, stop):
        """Walk ``v`` back through single-x-input ``allowed`` ops until ``stop(var)``:
        ``(nodes walked, var reached)``, or ``None`` if it stops elsewhere."""
        walked = []
        while not stop(v):
            node = producer.get(v)
            ins = [a for a in node.ins if t_var(a)] if node is not None else []
            if (node is None or node.prim not in allowed or len(ins) != 1
                    or (node.prim == "select_n" and t_var(node.ins[0]))):
                return None
            walked.append(node)
            v = ins[0]
        return walked, v

    made_by = lambda prim: lambda v: producer.get(v) is not None and producer[v].prim == prim

    for div in graph.nodes:
        if div.prim != "div" or len(div.ins) != 2 or not all(t_var(a) for a in div.ins):
            continue
        num, den = div.ins
        exp = producer.get(num)
        if exp is None or exp.prim != "exp":
            continue
        to_sum = back(den, _SOFTMAX_PLUMBING, made_by("reduce_sum"))
        if to_sum is None:
            continue
        total = producer[to_sum[1]]
        # the sum reads the numerator, or the same exponential computed again (``exp(s) /
        # exp(s).sum()``)
        same_exp = lambda v: v == num or (producer.get(v) is not None and producer[v].prim == "exp"
                                          and producer[v].ins[0] == exp.ins[0])
        masked = back(next(a for a in total.ins if t_var(a)), _SOFTMAX_PLUMBING, same_exp)
        if masked is None:
            continue
        nodes = [exp, total, div] + to_sum[0] + masked[0]
        if masked[1] != num:
            nodes.append(producer[masked[1]])
        z = exp.ins[0]
        sub = producer.get(z)
        if sub is not None and sub.prim == "sub" and t_var(sub.ins[0]):
            signal, shift = sub.ins
            if not t_var(shift):  # stop_gradient(max): a constant of the segment
                # any constant along the summed axes cancels in the softmax
                axes = total.params.get("axes", ())
                along = (graph.avals[total.ins[0]].shape == graph.avals[num].shape
                         and len(graph.avals[shift].shape) == len(graph.avals[num].shape)
                         and all(graph.avals[shift].shape[a] == 1 for a in axes))
                if along or _max_of(shift, signal, producer, graph):
                    nodes.append(sub)
                    z = signal
            else:  # the maximum computed from z inside the segment
                walked = back(shift, _SHIFT, made_by("reduce_max"))
                if walked is not None and _root(producer[walked[1]].ins[0], producer) == _root(
                        signal, producer):
                    nodes += [sub, producer[walked[1]]] + walked[0]
                    z = signal
        inside = {id(n) for n in nodes}
        if any(id(n) in found for n in nodes) or any(
                id(u) not in inside for n in nodes if n is not div
                for o in n.outs for u in users.get(o, ()) if any(t in tainted for t in u.outs)):
            continue
        if any(o in graph.outvars for n in nodes if n is not div for o in n.outs):
            continue
        seg = Segment("softmax", [], (z,), div.outs[0])
        for n in nodes:
            if any(o in tainted for o in n.outs):
                found[id(n)] = seg
    return found


_CALLS = frozenset({"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"})
#: what an elementwise custom-derivative call (``jax.nn.relu``, ``jnp.logaddexp``) may hold
_ELEMENTWISE_INNER = ELEMENTWISE | {"pjit", "jit", "closed_call", "broadcast_in_dim",
                                    "stop_gradient"}
#: what a softmax written as one custom-derivative call (``jax_softmax_custom_jvp``) may hold
_SOFTMAX_INNER = _ELEMENTWISE_INNER | _SOFTMAX_PLUMBING | _SHIFT | {"reduce_sum"}


def _inner_prims(node: Node) -> Optional[set]:
    """The primitives inside a custom-derivative call (nested calls included), or ``None``."""
    def collect(jaxpr, out):
        jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
        for eqn in jaxpr.eqns:
            out.add(eqn.primitive.name)
            for v in eqn.params.values():
                if hasattr(v, "eqns") or hasattr(getattr(v, "jaxpr", None), "eqns"):
                    collect(v, out)
        return out

    inner = node.params.get("call_jaxpr", node.params.get("fun_jaxpr"))
    if inner is None or not (hasattr(inner, "eqns") or hasattr(getattr(inner, "jaxpr", None), "eqns")):
        return None
    return collect(inner, set())


def _elementwise_call(node: Node) -> bool:
    """A node that is not a custom-derivative call, or one holding only elementwise ops: a
    ``custom_jvp`` softmax or normalisation must not pass for an activation."""
    if node.prim not in _CALLS:
        return True
    prims = _inner_prims(node)
    return prims is not None and prims <= _ELEMENTWISE_INNER


def _softmax_call(node: Node) -> bool:
    """A custom-derivative call that is a softmax (``jax.nn.softmax`` under
    ``jax_softmax_custom_jvp``): ``exp``, ``reduce_sum`` and ``div``, and nothing but the
    softmax's own plumbing and max shift."""
    if node.prim not in _CALLS:
        return False
    prims = _inner_prims(node)
    return prims is not None and {"exp", "reduce_sum", "div"} <= prims and prims <= _SOFTMAX_INNER


def _root(v, producer: dict, depth: int = 8):
    """``v`` before any layout change (:data:`_SAME_VALUES`)."""
    for _ in range(depth):
        node = producer.get(v)
        if node is None or node.prim not in _SAME_VALUES or not is_var(node.ins[0]):
            break
        v = node.ins[0]
    return v


def _max_of(shift, z, producer: dict, graph: Graph, depth: int = 12) -> bool:
    """Whether the (stop-gradient'ed) ``shift`` is computed from ``reduce_max`` of ``z`` (up to
    layout changes of ``z``)."""
    v = shift
    for _ in range(depth):
        node = producer.get(v)
        if node is None or node.prim not in _SHIFT:
            return False
        if node.prim == "reduce_max":
            return is_var(node.ins[0]) and _root(node.ins[0], producer) == _root(z, producer)
        v = next((a for a in node.ins if is_var(a)), None)
        if v is None:
            return False
    return False


def _mark_held(segments, producer: dict, graph: Graph) -> None:
    """Mark the operands of each contraction that are softmax outputs (the ``A`` of ``A·V``),
    possibly after layout changes: CP-LRP holds them constant."""
    softmax_out = {s.output for s in segments if s.kind == "softmax"}
    for seg in segments:
        if seg.kind != "bilinear":
            continue
        held = []
        for i, v in enumerate(seg.inputs):
            for _ in range(16):
                if v in softmax_out:
                    held.append(i)
                    break
                node = producer.get(v)
                ins = [a for a in node.ins if is_var(a) and a in graph.tainted] if node else []
                if node is None or node.prim not in PLUMBING or len(ins) != 1:
                    break
                v = ins[0]
        seg.held = tuple(held)




def _normalised(pair, producer: dict, graph: Graph, limit: int = 64) -> Optional[tuple]:
    """``(signal, scale)`` if one factor of a product is computed through a reduction from the
    other or from what the other centres (``x ⊙ rsqrt(mean(x²) + ε)``, RMSNorm;
    ``(x − μ) ⊙ rsqrt(var(x) + ε)``, LayerNorm), else ``None``."""
    tainted_ins = lambda node: [a for a in node.ins if is_var(a) and a in graph.tainted]
    for signal, scale in (pair, pair[::-1]):
        targets = {signal}
        centring = producer.get(signal)
        if centring is not None and centring.prim in ("sub", "add"):
            targets.update(tainted_ins(centring))
        todo, seen = [(scale, False)], set()
        while todo and len(seen) < limit:
            v, reduced = todo.pop()
            node = producer.get(v)
            if (v, reduced) in seen or node is None:
                continue
            seen.add((v, reduced))
            reduced = reduced or node.prim in _REDUCTIONS
            for a in tainted_ins(node):
                if reduced and a in targets:
                    return (signal, scale)
                todo.append((a, reduced))
    return None


def _root_of(v, producer: dict, graph: Graph, limit: int = 16) -> bool:
    """Whether ``v`` is a square root (a norm, a standard deviation) up to constant shifts,
    scalings, clamps and relayouts: ``sqrt(σ² + ε)``, ``‖x‖ + ε``, ``max(‖x‖, ε)``. Only such a
    denominator makes a division a normalisation (``e / Σe``, a softmax, does not)."""
    for _ in range(limit):
        node = producer.get(v)
        if node is None:
            return False
        if node.prim == "sqrt":
            return True
        if node.prim == "pow":
            return isinstance(node.ins[1], Lit) and float(np.asarray(node.ins[1].value)) == 0.5
        ins = [a for a in node.ins if is_var(a) and a in graph.tainted]
        if len(ins) != 1 or node.prim not in (AFFINE_CONST | RELAYOUT
                                              | {"max", "min", "convert_element_type"}):
            return False
        v = ins[0]
    return False


def _relayout_only(nodes) -> bool:
    """Whether ``nodes`` (a linear segment from its product on) hold only layout changes."""
    return all(n.prim in RELAYOUT for n in nodes[1:])


def _same_size(node: Node, graph: Graph) -> bool:
    ins = [graph.avals[a].size for a in node.ins if is_var(a)]
    return len(ins) == 1 and ins[0] == graph.avals[node.outs[0]].size


def _zero_pad(node: Node, graph: Graph, producer: dict) -> bool:
    """A ``pad`` of an x-dependent operand with the constant 0 (``jnp.pad``, Flax's ``CAUSAL``
    and explicit paddings), which the layer it feeds absorbs."""
    if node.prim != "pad" or not is_var(node.ins[0]) or node.ins[0] not in graph.tainted:
        return False
    value = _constant(node.ins[1], producer)
    return value is not None and is_zero(Lit(value))


def _constant(atom, producer: dict, depth: int = 4):
    """The value of a scalar known at trace time (a literal, possibly converted), else ``None``."""
    if isinstance(atom, Lit):
        return atom.value
    node = producer.get(atom)
    if depth and node is not None and node.prim in ("convert_element_type", "copy", "copy_p"):
        return _constant(node.ins[0], producer, depth - 1)
    return None


def _refuse_output_normalisation(segments, graph: Graph) -> None:
    """Raise if the output normalises over the class axis after the last linear layer
    (``log_softmax``, centring, ``logsumexp``): relevance of log-probabilities is not relevance
    of the class (LRP maps come out inverted), as with ``softmax``."""
    linear = [s for s in segments if s.family == "linear"]
    outs = [a for a in graph.outvars if is_var(a)]
    if not linear or not outs:
        return
    made = {o: n.index for n in graph.nodes for o in n.outs}
    after = made[linear[-1].output]
    out_shape = graph.avals[outs[0]].shape
    for node in graph.nodes[after + 1:]:
        t_ins = [a for a in node.ins if is_var(a) and a in graph.tainted]
        if not t_ins or not (node.prim in _OUTPUT_REDUCTIONS or _softmax_call(node)):
            continue
        shape = graph.avals[t_ins[0]].shape
        axes = node.params.get("axes", (node.params.get("axis"),))
        if _softmax_call(node):  # over some axis: refused whole at the output
            axes = (len(shape) - 1,)
        if shape == out_shape and len(shape) >= 1 and (len(shape) - 1) in tuple(axes):
            raise UnsupportedPrimitiveError(
                f"the model's output is normalised over the class axis after its last linear "
                f"layer ('{node.prim}' {_where(node)}: a log_softmax, softmax, centring or "
                "logsumexp). Rule-based relevance of normalised scores is not relevance of the "
                "class (LRP maps come out inverted). Explain the logits instead: pass the function "
                "before the normalisation.")


def _region_of(uniq, owner, rooted) -> Optional[Segment]:
    """The activation region whose vars (or root) contain every x-dependent input, if any."""
    candidates = []
    for v in uniq:
        for seg in [owner.get(v)] + rooted.get(v, []):
            if seg is not None and seg.kind == "activation" and seg not in candidates:
                candidates.append(seg)
    for seg in reversed(candidates):
        members = {o for n in seg.nodes for o in n.outs} | set(seg.inputs)
        if all(v in members for v in uniq):
            return seg
    return None


def _elementwise_shape(node: Node, graph: Graph) -> bool:
    shapes = {graph.avals[o].shape for o in node.outs}
    ins = {graph.avals[a].shape for a in node.ins if is_var(a) and a in graph.tainted}
    return len(shapes) == 1 and ins <= shapes


def _broadcast_shape(node: Node, graph: Graph) -> bool:
    """Elementwise with implicit broadcasting: every input of the output's rank, each axis of
    the output's size or 1 (``lax.mul`` of ``(B, D)`` and ``(B, 1)``)."""
    out = graph.avals[node.outs[0]].shape
    ins = [graph.avals[a].shape for a in node.ins if is_var(a)]
    return all(len(s) == len(out) and all(d in (1, o) for d, o in zip(s, out)) for s in ins)


def _affine_operand_ok(node: Node, t: int) -> bool:
    """Affine in ``t``: ``t`` is exactly one operand (so ``t * t`` is not), and on top of a ``div``."""
    positions = [i for i, a in enumerate(node.ins) if is_var(a) and a == t]
    return len(positions) == 1 and (node.prim != "div" or positions[0] == 0)


def _finish(segments, graph: Graph, users) -> None:
    """Fix each segment's single output and its position among layers."""
    out_set = {a for a in graph.outvars if is_var(a)}
    split_off = []

    def outside(seg):
        produced = [o for n in seg.nodes for o in n.outs]
        inside = {id(n) for n in seg.nodes}
        return list(dict.fromkeys(o for o in produced if o in out_set
                                  or any(id(u) not in inside for u in users.get(o, ()))))

    for seg in segments:
        if seg.kind in LINEAR_KINDS:  # plumbing that no affine op followed is plumbing again
            while seg.nodes[-1].prim in RELAYOUT and seg.nodes[-1] is not seg.core:
                seg.nodes.pop()
            seg.output = seg.nodes[-1].outs[0]
        if seg.kind == "activation":
            used_outside = outside(seg)
            # an affine op the region grew that feeds something else (RMSNorm's ``x − 0`` beside
            # its ``x²``) is a lone scaling, so that the activation keeps one output
            while len(used_outside) > 1:
                members = {id(m) for m in seg.nodes}
                tail = next((n for n in reversed(seg.nodes) if n.prim in AFFINE_CONST
                             and n.outs[0] in used_outside and len(seg.nodes) > 1
                             and not any(id(u) in members for u in users.get(n.outs[0], ()))
                             and len({a for a in n.ins if is_var(a) and a in graph.tainted}) == 1),
                            None)
                if tail is None:
                    break
                seg.nodes.remove(tail)
                t_in = next(a for a in tail.ins if is_var(a) and a in graph.tainted)
                split_off.append(Segment("scale", [tail], (t_in,), tail.outs[0], tail.name))
                used_outside = outside(seg)
            if len(used_outside) != 1:
                raise UnsupportedPrimitiveError(
                    f"the elementwise region {seg.describe()} has {len(used_outside)} outputs used "
                    "elsewhere; the engine needs one output per activation. Compute the activation "
                    "once and reuse its result.")
            seg.output = used_outside[0]
            seg.nodes = _needed(seg.nodes, seg.output)
    segments.extend(split_off)
    _mark_nonneg(segments, graph)
    _mark_gates(segments, graph)


def _mark_gates(segments, graph: Graph) -> None:
    """Mark which factors of each ``bilinear`` segment are gates (see :attr:`Segment.gates`)."""
    producer = {o: n for n in graph.nodes for o in n.outs}

    def is_gate(v):
        for _ in range(16):
            node = producer.get(v)
            if node is None:
                return False
            if activation_name(node) in ("logistic", "sigmoid"):
                return True
            t_ins = list(dict.fromkeys(a for a in node.ins if is_var(a) and a in graph.tainted))
            if len(t_ins) != 1 or node.prim not in AFFINE_CONST | RELAYOUT:
                return False
            if node.prim in AFFINE_CONST and not _affine_operand_ok(node, t_ins[0]):
                return False
            v = t_ins[0]
        return False

    for seg in segments:
        if seg.kind == "bilinear":
            seg.gates = tuple(is_gate(v) for v in seg.inputs)


_NONNEG_ACTIVATIONS = frozenset({"relu", "relu6", "softplus", "sigmoid", "logistic"})
_NONNEG_PASS = (PLUMBING - {"pad"}) | MAXES | {"reduce_window_sum", "reduce_sum"}


def _mark_nonneg(segments, graph: Graph) -> None:
    """Mark linear layers whose input is provably >= 0: a ReLU-like output, possibly pooled,
    reshaped or concatenated with other such values (an optimisation: rules skip x⁻ terms)."""
    nonneg: set = set()
    seg_of_out = {s.output: s for s in segments}

    def floats_nonneg(node):
        ins = [a for a in node.ins
               if isinstance(a, Lit) or jnp.issubdtype(graph.avals[a].dtype, jnp.inexact)]
        return bool(ins) and all(is_var(a) and a in nonneg for a in ins)

    for node in graph.nodes:
        seg = seg_of_out.get(node.outs[0])
        if seg is not None and seg.kind == "activation" and len(seg.nodes) == 1:
            n0 = seg.nodes[0]
            if activation_name(n0) in _NONNEG_ACTIVATIONS or (n0.prim == "max" and _const_zero_operand(n0)):
                nonneg.add(seg.output)
        elif node.prim in _NONNEG_PASS and floats_nonneg(node):
            nonneg.update(node.outs)
    for seg in segments:
        if seg.kind in LINEAR_KINDS:
            seg.nonneg_input = seg.inputs[0] in nonneg


def activation_name(node: Node) -> str:
    """``relu`` for ``jax.nn.relu``'s ``custom_jvp_call``, else the primitive's name."""
    if node.prim == "custom_jvp_call":
        inner = node.params.get("call_jaxpr")
        eqns = getattr(getattr(inner, "jaxpr", inner), "eqns", ())
        if len(eqns) == 1 and "name" in eqns[0].params:
            return eqns[0].params["name"]
    return node.prim


def _const_zero_operand(node: Node) -> bool:
    for a in node.ins:
        if isinstance(a, Lit):
            return is_zero(a)
    return False


def is_zero(atom) -> bool:
    """Whether ``atom`` is a constant known at trace time (a :class:`Lit`) holding only zeros."""
    if not isinstance(atom, Lit):
        return False
    try:
        value = np.asarray(atom.value)
    except Exception:  # noqa: BLE001 - not a concrete value: not a known zero
        return False
    return value.size > 0 and bool(np.all(value == 0))


def _needed(nodes, output) -> list:
    """The nodes of ``nodes`` that ``output`` depends on, in order."""
    need, keep = {output}, []
    for node in reversed(nodes):
        if any(o in need for o in node.outs):
            keep.append(node)
            need.update(a for a in node.ins if is_var(a))
    return keep[::-1]
