"""scikit-learn's handwritten digits (shipped with scikit-learn: works offline)."""
from __future__ import annotations

import numpy as np
from sklearn import datasets

__all__ = ["load_digits"]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8×8 digit images of scikit-learn (UCI optical recognition).

    Returns:
      ``(x, y)``: ``x`` float32 of shape ``(1797, 8, 8, 1)`` (NHWC), pixel counts
      0..16 divided by 16 into [0, 1]; ``y`` int32 of shape ``(1797,)`` in 0..9.

    Examples:
      >>> x, y = load_digits()
      >>> x.shape, x.dtype, y.dtype, float(x.max())
      ((1797, 8, 8, 1), dtype('float32'), dtype('int32'), 1.0)
    """
    digits = datasets.load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return x, digits.target.astype(np.int32)
