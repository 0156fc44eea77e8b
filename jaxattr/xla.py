"""XLA compiler options for the programs jaxattr compiles that run a backward pass.

On XLA's CPU backend (jax 0.10) convolutions, matrix products, reductions and elementwise
chains around them are by default handed to YNNPACK as library fusions. A forward pass alone
fuses into one YNNPACK graph that runs multi-threaded, but in a program with a backward pass
each convolution, and each transposed convolution of the backward, is its own YNNPACK call,
and those run on one core; the reduction fusions, for their part, pull elementwise operations
out of XLA's own fused loops, so that their other operands (masks, stabilisers) are written to
memory and read back. :data:`CPU_BACKWARD_OPTIONS` hands YNNPACK the matrix products only, one
call each (``LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT``); convolutions run on XLA's Eigen kernels,
which use every core, and reductions and elementwise operations in XLA's fused loops.

Measured on a 2-core CPU (2026-12-05, ``ja.attribute`` inside ``jax.jit`` under each setting,
interleaved rounds; time over XLA's defaults, YNNPACK off → these options):

- the paper CNN at batch 128: gradient 0.62 → 0.61, LRP 0.63 → 0.62, DeepLIFT 0.69 → 0.68;
- the zoo's ViT, BERT, GPT, LSTM and GRU (dim 32, batch 32; gradient, LRP, DeepLIFT):
  0.87–1.25 → 0.77–1.03 (median 0.95);
- a ViT with dense patch embedding (``benchmarks/peers.py``'s, batch 64): gradient
  0.96 → 0.87, AttnLRP 0.93 → 0.91.

One exception: LRP on the zoo's ConvNeXt took 1.25× the defaults' time under either setting
(its small 16×16 convolutions run faster on YNNPACK: with YNNPACK's individual convolutions
added, 1.10×, and its gradient 0.92×; on the paper CNN they cost about 1.6×). Forward-only
programs (the perturbation curves) keep XLA's defaults, which are faster there: the whole
forward is one YNNPACK graph.

:func:`backward_options` returns these options on CPU, ``{}`` on other backends and when the
environment variable ``JAXATTR_XLA_DEFAULTS=1`` is set (then XLA's defaults are used
everywhere); :func:`jaxattr.explain` / :func:`jaxattr.attribute` and the training step compile
with them. A ``jax.jit`` *around* a jaxattr call compiles with the outer function's options:
pass ``compiler_options=jaxattr.xla.backward_options()`` there too.
"""

from __future__ import annotations

import os

import jax

__all__ = ["CPU_BACKWARD_OPTIONS", "backward_options"]

#: Options for CPU programs with a backward pass: matrix products to YNNPACK one call each,
#: everything else to XLA's own kernels (the list replaces XLA's default list of fusion types).
CPU_BACKWARD_OPTIONS: dict[str, str] = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def backward_options(backend: str | None = None) -> dict[str, str]:
    """``compiler_options`` for a jitted program with a backward pass on ``backend``.

    Args:
      backend: ``"cpu"``, ``"gpu"``, ...; ``None`` is ``jax.default_backend()``.

    Returns:
      :data:`CPU_BACKWARD_OPTIONS` on CPU; ``{}`` elsewhere, or when ``JAXATTR_XLA_DEFAULTS=1``.
    """
    if os.environ.get("JAXATTR_XLA_DEFAULTS", "") not in ("", "0"):
        return {}
    backend = jax.default_backend() if backend is None else backend
    return dict(CPU_BACKWARD_OPTIONS) if backend == "cpu" else {}
