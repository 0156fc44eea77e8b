"""Throughput of every attribution method on the paper CNN (DESIGN.md §7).

Prints one JSON object per line:
``{"tool": "jaxattr", "what": ..., "batch": N, "seconds": s, "images_per_s": r,
"compile_seconds": c, "ratio_to_gradient": g, "ratio_to_forward": f}``;
``seconds`` is the median steady-state time of one call, compile time is reported apart.
Ratios are taken within the same run (machines here are noisy): ``ratio_to_forward`` and
``ratio_to_gradient`` are throughput ratios to the forward pass and to ``jax.grad`` with XLA's
defaults; ``cost_vs_tuned_gradient`` is time over ``jax.grad`` compiled with
:func:`jaxattr.xla.backward_options` (the plain input gradient as jaxattr compiles it), the
measure of the "rule-based methods cost ≤ 1.3× the gradient" goal.

    python benchmarks/attribution.py --batch 128 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp

import jaxattr as ja
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


def timeit(fn, *args, repeats: int):
    """(compile seconds, median wall seconds, median process-CPU seconds) of ``fn(*args)``.

    CPU time is reported too: on a shared machine it is disturbed less by other load."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return compile_s, statistics.median(walls), statistics.median(cpus)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    args = parser.parse_args(argv)

    model = PaperCNN()
    x = jax.random.uniform(jax.random.key(0), (args.batch, args.size, args.size, 3))
    params = model.init(jax.random.key(1), x[:1])
    forward = jax.jit(model.apply)
    grad_fn = lambda p, x: jax.grad(lambda x: model.apply(p, x)[:, 0].sum())(x)
    plain_grad = jax.jit(grad_fn)
    # the plain gradient under the compiler options jaxattr uses for backward programs
    tuned_grad = jax.jit(grad_fn, compiler_options=ja.xla.backward_options())
    rows = {}

    def emit(what, compile_s, seconds, cpu_s):
        rows[what] = seconds
        rec = {"tool": "jaxattr", "what": what, "batch": args.batch, "seconds": round(seconds, 5),
               "images_per_s": round(args.batch / seconds, 1), "compile_seconds": round(compile_s, 3),
               "cpu_seconds": round(cpu_s, 5)}
        if "forward" in rows:
            rec["ratio_to_forward"] = round(rows["forward"] / seconds, 3)
        if "jax.grad" in rows:
            rec["ratio_to_gradient"] = round(rows["jax.grad"] / seconds, 3)
        if "jax.grad+options" in rows:
            rec["cost_vs_tuned_gradient"] = round(seconds / rows["jax.grad+options"], 3)
        print(json.dumps(rec), flush=True)

    emit("forward", *timeit(forward, params, x, repeats=args.repeats))
    emit("jax.grad", *timeit(plain_grad, params, x, repeats=args.repeats))
    emit("jax.grad+options", *timeit(tuned_grad, params, x, repeats=args.repeats))
    for name in args.methods:
        fn = ja.explain(model.apply, METHODS[name])
        emit(name, *timeit(fn, params, x, repeats=args.repeats))


if __name__ == "__main__":
    main()
