"""XLA compiler options for the programs jaxattr compiles that run a backward pass.

On XLA's CPU backend (jax 0.10) convolutions and matrix products are by default handed to
YNNPACK as one library call each ("individual" YNN fusions). A whole forward pass fuses into
one YNNPACK graph and runs multi-threaded, but in a program with a backward pass each
convolution, and each transposed convolution of the backward, is its own YNN fusion, and those
run on one core. With YNN fusions off the same program runs on XLA's Eigen kernels, which use
every core: measured on the paper CNN at batch 128 on a 2-core CPU, the input gradient took
150 ms instead of 260 ms and a CIFAR-10 training step 268 ms instead of 512 ms
(``benchmarks/attribution.py`` and ``benchmarks/training.py`` report both). Forward-only
programs (the perturbation curves) keep XLA's defaults, which are faster there.

:func:`backward_options` is passed as ``compiler_options`` to ``jax.jit`` by
:func:`jaxattr.explain` / :func:`jaxattr.attribute` and by the training loop. It is empty on
other backends, and when the environment variable ``JAXATTR_XLA_DEFAULTS=1`` is set (then XLA's
defaults are used everywhere). A ``jax.jit`` *around* a jaxattr call compiles with the outer
function's options; pass ``compiler_options=jaxattr.xla.backward_options()`` there too.
"""

from __future__ import annotations

import os

import jax

__all__ = ["CPU_BACKWARD_OPTIONS", "backward_options"]

#: Options for CPU programs with a backward pass: no YNNPACK library fusions (an empty list
#: replaces XLA's default list of fusion types).
CPU_BACKWARD_OPTIONS: dict[str, str] = {"xla_cpu_experimental_ynn_fusion_type": ""}


def backward_options(backend: str | None = None) -> dict[str, str]:
    """``compiler_options`` for a jitted program with a backward pass on ``backend``.

    Args:
      backend: ``"cpu"``, ``"gpu"``, ...; ``None`` is ``jax.default_backend()``.

    Returns:
      :data:`CPU_BACKWARD_OPTIONS` on CPU, ``{}`` elsewhere or when ``JAXATTR_XLA_DEFAULTS=1``.
    """
    if os.environ.get("JAXATTR_XLA_DEFAULTS", "") not in ("", "0"):
        return {}
    backend = jax.default_backend() if backend is None else backend
    return dict(CPU_BACKWARD_OPTIONS) if backend == "cpu" else {}
