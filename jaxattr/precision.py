"""The precision policy: how exactly jaxattr's programs compute their convolutions and products.

Three names, one meaning everywhere (``ja.explain`` / ``ja.attribute``, the perturbation curves,
training, ``jaxattr study --precision``):

* ``"float32"`` (the default): float32-exact, XLA's ``HIGHEST`` precision on every convolution
  and ``dot_general`` of the program (``jax.default_matmul_precision("highest")`` while it is
  traced). On CPU this is what XLA does anyway (same numbers, same speed); on recent NVIDIA
  GPUs it turns TF32 off. Measured on one H200 (paper CNN, float32 weights and inputs): the
  largest error of an attribution against a float64 reference, relative to its largest value,
  was 0.21 (gradient), 0.22 (LRP-ε), 0.074 (LRP ε+♭) and 0.22 (DeepLIFT) at XLA's default, and
  4.5e-7, 1.2e-2, 2.2e-5, 5.4e-7 with ``"highest"``, at 2.1–3.4× the time.
* ``"fast"``: the backend's default (``DEFAULT`` precision): TF32 tensor cores on recent NVIDIA
  GPUs, one bfloat16 pass on TPUs, float32 on CPU.
* ``"bfloat16"``: for training, bfloat16 compute with float32 master weights (the parameters
  and the optimiser state stay float32; the forward and backward of each step run on bfloat16
  copies). For attributions and perturbation forwards it is jax's
  ``default_matmul_precision("bfloat16")`` (bfloat16 passes where the backend has them: TPU;
  XLA's default elsewhere): relevance is accumulated in float32 and nothing is cast.

``precision=None`` (the default argument everywhere) means: the user's own
``jax.default_matmul_precision`` when one is active (a ``with`` block or the
``jax_default_matmul_precision`` flag), otherwise ``"float32"``. An explicit name overrides the
user's setting for jaxattr's program. An operation that names its own precision
(``lax.conv(..., precision=...)`` in the model) keeps it.

The precision is part of every compiled program's cache key: jax keys its ``jit`` caches on the
active ``default_matmul_precision``, and jaxattr's own caches (:func:`jaxattr.explain`) key on the
resolved name, so one precision never reuses another's program.

Example:
    >>> import jax, jax.numpy as jnp, jaxattr as ja
    >>> ja.precision.resolve(None)
    'float32'
    >>> with jax.default_matmul_precision("tensorfloat32"):
    ...     ja.precision.resolve(None)  # the user's setting is respected
    'tensorfloat32'
    >>> ja.precision.resolve("fast")
    'fast'
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import jax

__all__ = ["DEFAULT", "NAMES", "check", "context", "matmul_precision", "resolve"]

#: The precision names, in the order the error message lists them.
NAMES: tuple[str, ...] = ("float32", "fast", "bfloat16")

#: What ``precision=None`` resolves to when the user has set no matmul precision of their own.
DEFAULT = "float32"

#: ``jax.default_matmul_precision`` value of each name.
_MATMUL = {"float32": "highest", "fast": "default", "bfloat16": "bfloat16"}


def check(precision: Optional[str], argument: str = "precision") -> Optional[str]:
    """``precision`` if it is ``None`` or one of :data:`NAMES`; otherwise a ``ValueError``."""
    if precision is None or (isinstance(precision, str) and precision in NAMES):
        return precision
    allowed = ", ".join(repr(n) for n in NAMES)
    raise ValueError(f"{argument} must be one of {allowed} (or None: the active "
                     f"jax.default_matmul_precision, else {DEFAULT!r}); got {precision!r}")


def _user_setting() -> Optional[str]:
    value = jax.config.jax_default_matmul_precision
    return None if value is None else str(value)


def resolve(precision: Optional[str]) -> str:
    """The setting a program runs with: a name of :data:`NAMES`, or (``precision=None`` inside
    the user's ``jax.default_matmul_precision(...)``) the user's own value, e.g. ``"highest"``."""
    precision = check(precision)
    if precision is not None:
        return precision
    return _user_setting() or DEFAULT


def matmul_precision(resolved: str) -> str:
    """The ``jax.default_matmul_precision`` value for a resolved setting."""
    return _MATMUL.get(resolved, resolved)


@contextlib.contextmanager
def context(precision: Optional[str]) -> Iterator[str]:
    """Trace (or call) a program under ``precision``; yields the resolved setting.

    ``None`` inside a user's ``jax.default_matmul_precision`` leaves it as it is."""
    resolved = resolve(precision)
    with jax.default_matmul_precision(matmul_precision(resolved)):
        yield resolved
