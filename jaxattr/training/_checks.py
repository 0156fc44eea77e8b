"""Input validation shared by the training modules (private)."""
from __future__ import annotations

from typing import Any

import numpy as np


def _shape_dtype(a: Any, name: str) -> tuple[tuple[int, ...], np.dtype]:
    shape, dtype = getattr(a, "shape", None), getattr(a, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(
            f"{name} must be an array (numpy or jax), got {type(a).__name__}"
        )
    return tuple(shape), np.dtype(dtype)


def check_labels(y: Any, name: str) -> int:
    """Check that ``y`` is a 1-D integer array of class indices; return its length."""
    shape, dtype = _shape_dtype(y, name)
    if len(shape) != 1:
        raise ValueError(f"{name} must be 1-D (examples,), got shape {shape}")
    if not np.issubdtype(dtype, np.integer):
        raise TypeError(
            f"{name} must have an integer dtype (class indices), got {dtype}"
        )
    return shape[0]


def check_examples(x: Any, y: Any, x_name: str, y_name: str) -> tuple[int, ...]:
    """Check inputs ``x`` (floating, ≥ 2-D) against labels ``y``.

    Returns the shape of one example.
    """
    shape, dtype = _shape_dtype(x, x_name)
    if len(shape) < 2:
        raise ValueError(
            f"{x_name} must have shape (examples, ...), e.g. NHWC images "
            f"(examples, height, width, channels), got shape {shape}"
        )
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(
            f"{x_name} must have a floating dtype (e.g. float32 scaled to [0, 1]), "
            f"got {dtype}"
        )
    n = check_labels(y, y_name)
    if shape[0] != n:
        raise ValueError(
            f"{x_name} and {y_name} must have the same number of examples, got "
            f"{shape[0]} and {n}"
        )
    if n == 0:
        raise ValueError(f"{x_name} must hold at least one example, got shape {shape}")
    return shape[1:]


def check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
