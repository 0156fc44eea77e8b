"""Throughput of every attribution method on the paper CNN (DESIGN.md §7).

Prints one JSON object per line:
``{"tool": "jaxattr", "what": ..., "batch": N, "seconds": s, "images_per_s": r,
"compile_seconds": c, "ratio_to_gradient": g, "ratio_to_forward": f}``;
``seconds`` is the median steady-state time of one call, compile time is reported apart.
Every function is compiled first, then timed in interleaved rounds (``--repeats``), and ratios
are taken within each round, their median reported (machines here are noisy):
``ratio_to_forward`` and ``ratio_to_gradient`` are throughput ratios to the forward pass and to ``jax.grad`` with XLA's
defaults; ``cost_vs_tuned_gradient`` is time over ``jax.grad`` compiled with
:func:`jaxattr.xla.backward_options` (the plain input gradient as jaxattr compiles it), the
measure of the "rule-based methods cost ≤ 1.3× the gradient" goal (``..._iqr``: its quartiles
over the rounds). ``gflops`` and
``flops_vs_gradient`` are XLA's operation counts of the same programs (``cost_analysis``): what
a method must compute, independent of the machine's load.

The last row, ``call_overhead``, is the cost of the call itself: a warm
``ja.explain(model.apply, ja.Gradient())(params, x, target)`` against the bare ``jax.jit`` of
the same computation (same compiler options, no input checks), timed in interleaved rounds
(``--overhead-repeats``): ``overhead_ratio`` is the median per-round time ratio (goal ≤ 1.05 at
batch 128), ``overhead_ms`` the median per-round difference.

Rows ``grad_params.<method>`` (``--grad-params``, default LRP ε+♭ and DeepLIFT) time the
derivative of an explanation w.r.t. the parameters, as when an explanation is part of a training
loss (issue #20): ``jax.jit(jax.grad(lambda p: (explain(p, x) ** 2).sum()))``, compiled with
:func:`jaxattr.xla.backward_options`. ``ratio_to_explanation`` is its time over the explanation
alone (median of the per-round ratios, ``..._iqr`` its quartiles); a second-order program of
this kind is expected to cost 2–4× its first-order one.

    python benchmarks/attribution.py --batch 128 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics

import jax
import jax.numpy as jnp

import jaxattr as ja
from _timing import timed  # benchmarks/ is the script's directory
from jaxattr.models.paper_cnn import PaperCNN

METHODS = {
    "gradient": ja.Gradient(),
    "gradient_x_input": ja.GradientXInput(),
    "guided_backprop": ja.GuidedBackprop(),
    "deconvnet": ja.DeconvNet(),
    "deep_taylor": ja.DeepTaylor(),
    "deeplift": ja.DeepLIFT(),
    "deeplift.reveal_cancel": ja.DeepLIFT(rule="reveal_cancel"),
    "integrated_gradients_32": ja.IntegratedGradients(steps=32),
    "lrp.epsilon": ja.LRP(ja.rules.Epsilon()),
    "lrp.epsilon_plus_flat": ja.LRP(ja.composites.epsilon_plus_flat()),
    "lrp.epsilon_gamma_box": ja.LRP(ja.composites.epsilon_gamma_box(0.0, 1.0)),
    "lrp.epsilon_alpha2_beta1": ja.LRP(ja.composites.epsilon_alpha2_beta1()),
}


def _flops(fn, *args) -> float:
    """XLA's count of floating-point operations of ``jax.jit(fn)(*args)``: a cost that does not
    depend on the machine's load (convolutions dominate it)."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def _squared_explanation(apply_fn, method):
    """``(params, x) -> Σ R²`` with ``R`` the explanation: a scalar to differentiate w.r.t. the
    parameters (the shape of a "right for the right reasons" penalty)."""
    return lambda p, x: (ja.attribute(apply_fn, p, x, method=method) ** 2).sum()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--overhead-repeats", type=int, default=30)
    parser.add_argument("--grad-params", nargs="*", default=["lrp.epsilon_plus_flat", "deeplift"],
                        help="methods whose explanation is also differentiated w.r.t. params")
    parser.add_argument("--precision", default=None, choices=("float32", "fast", "bfloat16"),
                        help="jaxattr.precision setting (default: float32, or the active "
                             "jax.default_matmul_precision)")
    args = parser.parse_args(argv)
    with ja.precision.context(args.precision):
        _run(args)


def _run(args) -> None:
    """The benchmark, under ``args.precision`` (jax keys its compiled programs on it)."""
    methods = list(dict.fromkeys(args.methods + args.grad_params))  # each explanation timed once

    model = PaperCNN()
    x = jax.random.uniform(jax.random.key(0), (args.batch, args.size, args.size, 3))
    params = model.init(jax.random.key(1), x[:1])
    forward = jax.jit(model.apply)
    grad_fn = lambda p, x: jax.grad(lambda x: model.apply(p, x)[:, 0].sum())(x)
    plain_grad = jax.jit(grad_fn)
    # the plain gradient under the compiler options jaxattr uses for backward programs
    options = ja.xla.backward_options()
    tuned_grad = jax.jit(grad_fn, compiler_options=options)
    fns = {"forward": lambda: forward(params, x), "jax.grad": lambda: plain_grad(params, x),
           "jax.grad+options": lambda: tuned_grad(params, x)}
    for name in methods:
        fns[name] = (lambda fn: lambda: fn(params, x))(
            ja.explain(model.apply, METHODS[name], precision=args.precision))
    for name in args.grad_params:
        fns[f"grad_params.{name}"] = (lambda fn: lambda: fn(params, x))(
            jax.jit(jax.grad(_squared_explanation(model.apply, METHODS[name])),
                    compiler_options=options))
    t = timed(fns, args.repeats)
    first, median, cpu = t.first, t.median, t.cpu
    flops = {"forward": _flops(model.apply, params, x), "jax.grad": _flops(grad_fn, params, x)}
    flops["jax.grad+options"] = flops["jax.grad"]
    for name in methods:
        flops[name] = _flops(lambda p, x, m=METHODS[name]: ja.attribute(model.apply, p, x, method=m),
                             params, x)
    for name in args.grad_params:
        flops[f"grad_params.{name}"] = _flops(
            jax.grad(_squared_explanation(model.apply, METHODS[name])), params, x)
    for what, seconds in median.items():
        cost, *cost_iqr = t.ratio(what, "jax.grad+options")
        extra = {}
        if what.startswith("grad_params."):
            explanation = what.removeprefix("grad_params.")
            ratio, *ratio_iqr = t.ratio(what, explanation)
            extra = {"ratio_to_explanation": round(ratio, 3),
                     "ratio_to_explanation_iqr": [round(q, 3) for q in ratio_iqr],
                     "flops_vs_explanation": round(flops[what] / flops[explanation], 3)}
        print(json.dumps({
            "tool": "jaxattr", "what": what, "batch": args.batch,
            "precision": args.precision or "float32", "device": jax.devices()[0].device_kind, "seconds": round(seconds, 5),
            "images_per_s": round(args.batch / seconds, 1),
            "compile_seconds": round(first[what] - seconds, 3), "cpu_seconds": round(cpu[what], 5),
            "ratio_to_forward": round(t.ratio("forward", what)[0], 3),
            "ratio_to_gradient": round(t.ratio("jax.grad", what)[0], 3),
            "cost_vs_tuned_gradient": round(cost, 3),
            "cost_vs_tuned_gradient_iqr": [round(q, 3) for q in cost_iqr],
            "gflops": round(flops[what] / 1e9, 3),
            "flops_vs_gradient": round(flops[what] / flops["jax.grad"], 3), **extra}), flush=True)
    print(json.dumps(call_overhead(model.apply, params, x, args.overhead_repeats)), flush=True)


def call_overhead(apply_fn, params, x, repeats: int) -> dict:
    """A warm ``ja.explain`` call against the bare compiled program of the same computation."""
    method, target = ja.Gradient(), jnp.zeros(x.shape[0], jnp.int32)
    bare = jax.jit(lambda p, x, t: method.compute(apply_fn, p, x, t, None)[0],
                   compiler_options=ja.xla.backward_options())
    explain = ja.explain(apply_fn, method)
    t = timed({"bare": lambda: bare(params, x, target),
               "explain": lambda: explain(params, x, target)}, repeats)
    ratio, *iqr = t.ratio("explain", "bare")
    diff = statistics.median(a - b for a, b in zip(t.rounds["explain"], t.rounds["bare"]))
    return {"tool": "jaxattr", "what": "call_overhead", "batch": x.shape[0],
            "seconds": round(t.median["explain"], 6), "bare_seconds": round(t.median["bare"], 6),
            "overhead_ms": round(diff * 1e3, 4), "overhead_ratio": round(ratio, 4),
            "overhead_ratio_iqr": [round(q, 4) for q in iqr]}


if __name__ == "__main__":
    main()
