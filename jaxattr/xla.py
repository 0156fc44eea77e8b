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

Programs without a convolution are the other way round: there XLA's defaults are as fast or
faster. Measured on a 2-core CPU (2026-12-05, ``ja.attribute`` inside ``jax.jit`` with either
option set, 48 calls each): on a ViT with dense patch embedding, a GPT- and a BERT-style block
and an LSTM, the gradient took 0.87–0.91× the time with the defaults, DeepLIFT 0.87–0.99×, the
rule-based methods 0.87–1.04×; on an MLP-Mixer (a patch convolution) the defaults took
1.19–1.38× as long. :func:`program_options` therefore turns YNN fusions off only for a program
with a convolution.

:func:`program_options` is what :func:`jaxattr.explain` / :func:`jaxattr.attribute` compile
with; :func:`backward_options` is the rule without the program (the training loop, whose
models are the study's CNNs, passes it). Both are empty on other backends, and when the
environment variable ``JAXATTR_XLA_DEFAULTS=1`` is set (then XLA's defaults are used
everywhere). A ``jax.jit`` *around* a jaxattr call compiles with the outer function's options;
pass ``compiler_options=jaxattr.xla.program_options(apply_fn, params, x)`` there too.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
from jax.extend import core as jcore

__all__ = ["CPU_BACKWARD_OPTIONS", "backward_options", "has_convolution", "program_options"]

#: Options for CPU programs with a backward pass: no YNNPACK library fusions (an empty list
#: replaces XLA's default list of fusion types).
CPU_BACKWARD_OPTIONS: dict[str, str] = {"xla_cpu_experimental_ynn_fusion_type": ""}


def backward_options(backend: str | None = None, *, convolution: bool = True) -> dict[str, str]:
    """``compiler_options`` for a jitted program with a backward pass on ``backend``.

    Args:
      backend: ``"cpu"``, ``"gpu"``, ...; ``None`` is ``jax.default_backend()``.
      convolution: whether the program has a convolution (see the module docstring: only then
        do YNN fusions cost time).

    Returns:
      :data:`CPU_BACKWARD_OPTIONS` on CPU for a program with a convolution, ``{}`` otherwise,
      elsewhere, or when ``JAXATTR_XLA_DEFAULTS=1``.
    """
    if os.environ.get("JAXATTR_XLA_DEFAULTS", "") not in ("", "0") or not convolution:
        return {}
    backend = jax.default_backend() if backend is None else backend
    return dict(CPU_BACKWARD_OPTIONS) if backend == "cpu" else {}


def has_convolution(fn: Callable, *args: Any) -> bool:
    """Whether ``fn(*args)`` runs a convolution (``conv_general_dilated``), in its own jaxpr or
    in any it calls (``jit``, ``scan``/``cond`` bodies, ``custom_vjp``/``custom_jvp``
    functions). Traces ``fn`` once, abstractly.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxattr.xla import has_convolution
        >>> has_convolution(lambda w, x: jnp.tanh(x @ w), jnp.ones((3, 2)), jnp.ones((4, 3)))
        False
    """
    return _any_convolution(jax.make_jaxpr(fn)(*args).jaxpr)


def program_options(fn: Callable, *args: Any, backend: str | None = None) -> dict[str, str]:
    """:func:`backward_options` for a program around ``fn(*args)`` (its model, say
    ``apply_fn(params, x)``): YNN fusions off on CPU only where ``fn`` has a convolution."""
    options = backward_options(backend)  # {}: not CPU, or XLA's defaults asked for: no trace
    return options if options and has_convolution(fn, *args) else {}


def _any_convolution(jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            return True
        if any(_any_convolution(inner) for inner in _jaxprs_in(eqn.params.values())):
            return True
    return False


def _jaxprs_in(values):
    """The jaxprs among ``values`` (an equation's parameters; cond's branches come as a tuple)."""
    for value in values:
        if isinstance(value, jcore.ClosedJaxpr):
            yield value.jaxpr
        elif isinstance(value, jcore.Jaxpr):
            yield value
        elif isinstance(value, (tuple, list)):
            yield from _jaxprs_in(value)
