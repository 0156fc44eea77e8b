"""AOPC throughput against the forward floor, on the paper's CNN with random weights.

An AOPC curve with L steps needs batch·(L+1) forward passes; nothing can be faster than
those forwards, so the "floor" is measured in the same run: the jitted forward of the same
model at the same model batch size the AOPC uses per chunk, scaled to batch·(L+1) images.
``floor_ratio`` = AOPC seconds / floor seconds (goal ≤ 1.25), the median over interleaved
rounds of the ratio within each round; ``floor_ratio_min`` from the fastest runs and
``floor_ratio_cpu`` from this process's CPU seconds (both steadier on a busy, shared machine). Compile time
(first call minus steady state) is reported apart from the steady-state median.

Prints one JSON object per line (DESIGN.md §7):

    {"tool": "jaxattr", "what": "forward" | "aopc_<L>", "batch": N, "steps": L,
     "seconds": s, "images_per_s": r, "compile_seconds": c, "floor_ratio": q, ...}

``images_per_s`` is images explained per second for ``aopc_<L>`` (each needs L+1
forwards) and forwards per second for ``forward``.

    python benchmarks/aopc.py --batch 32 --steps 16 100 --chunk-size 256
"""
from __future__ import annotations

import argparse
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxattr as ja
from _timing import timed  # benchmarks/ is the script's directory
from jaxattr.evaluation import perturbation_curve
from jaxattr.evaluation.aopc import _block_sizes


class _PaperCNN(nn.Module):
    """Fallback: 3×3 SAME convs 32,32 | pool | 64,64 | pool | 128,128 | pool | 512 | 10."""

    @nn.compact
    def __call__(self, x):
        for filters in (32, 64, 128):
            x = nn.relu(nn.Conv(filters, (3, 3), padding="SAME")(x))
            x = nn.relu(nn.Conv(filters, (3, 3), padding="SAME")(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Dense(512)(x.reshape(x.shape[0], -1)))
        return nn.Dense(10)(x)


def paper_cnn() -> nn.Module:
    try:
        from jaxattr.models.paper_cnn import PaperCNN
    except ImportError:
        return _PaperCNN()
    return PaperCNN()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 100])
    parser.add_argument("--chunk-size", type=int, default=256, help="model evaluations per chunk; 0 = unchunked")
    parser.add_argument("--region", type=int, default=1)
    parser.add_argument("--perturbation", default="uniform")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", default=None, choices=("float32", "fast", "bfloat16"),
                        help="jaxattr.precision setting (default: float32, or the active "
                             "jax.default_matmul_precision)")
    args = parser.parse_args(argv)
    with ja.precision.context(args.precision):
        _run(args)


def _run(args) -> None:
    """The benchmark, under ``args.precision`` (jax keys its compiled programs on it)."""
    chunk = args.chunk_size or None

    model = paper_cnn()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((args.batch, 32, 32, 3)), jnp.float32)
    relevance = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    params = model.init(jax.random.key(0), x[:1])
    forward = jax.jit(model.apply)
    common = {"tool": "jaxattr", "batch": args.batch, "device": jax.devices()[0].device_kind,
              "chunk_size": chunk, "region": args.region, "perturbation": args.perturbation,
              "precision": args.precision or "float32"}

    for steps in args.steps:
        _, per_block, per_count_block = _block_sizes(args.batch, steps + 1, chunk, 1)
        model_batch = per_block * per_count_block
        scale = args.batch * (steps + 1) / model_batch  # floor = this many forwards of model_batch
        xs = jnp.asarray(rng.random((model_batch, 32, 32, 3)), jnp.float32)
        t = timed({
            "forward": lambda: forward(params, xs),
            "aopc": lambda: perturbation_curve(
                model.apply, params, x, None, relevance, region=args.region, steps=steps,
                perturbation=args.perturbation, chunk_size=chunk, progress=False, precision=args.precision,
            ),
        }, args.repeats)
        first, median, fastest, cpu = t.first, t.median, t.fastest, t.cpu
        floor, floor_min = median["forward"] * scale, fastest["forward"] * scale
        line = {**common, "steps": steps, "model_batch": model_batch}
        print(json.dumps({**line, "what": "forward", "seconds": round(floor, 4),
                          "images_per_s": round(args.batch * (steps + 1) / floor, 1),
                          "compile_seconds": round(first["forward"] - median["forward"], 3),
                          "floor_ratio": 1.0}), flush=True)
        print(json.dumps({**line, "what": f"aopc_{steps}", "seconds": round(median["aopc"], 4),
                          "images_per_s": round(args.batch / median["aopc"], 2),
                          "compile_seconds": round(first["aopc"] - median["aopc"], 3),
                          "floor_ratio": round(t.ratio("aopc", "forward")[0] / scale, 3),
                          "floor_ratio_min": round(fastest["aopc"] / floor_min, 3),
                          "floor_ratio_cpu": round(cpu["aopc"] / (cpu["forward"] * scale), 3)}), flush=True)


if __name__ == "__main__":
    main()
