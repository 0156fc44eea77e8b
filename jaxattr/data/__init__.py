"""Data sets of the reproduction, as numpy arrays (NHWC float32 in [0, 1], int32
labels). Nothing here imports the rest of jaxattr; tensorflow-datasets is imported
only when CIFAR-10 is loaded."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from jaxattr.data.cifar10 import DatasetUnavailableError as DatasetUnavailableError
from jaxattr.data.cifar10 import load_cifar10 as load_cifar10
from jaxattr.data.digits import load_digits as load_digits

__all__ = ["DATASETS", "DatasetUnavailableError", "load_cifar10", "load_dataset", "load_digits"]

DATASETS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "digits": load_digits,
    "cifar10": load_cifar10,
}
"""Loaders by name; each returns ``(x, y)`` with every example of the data set."""


def load_dataset(name: str, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Load data set ``name`` (a key of :data:`DATASETS`) as ``(x, y)``.

    Keyword arguments go to the loader, e.g. ``load_dataset("cifar10",
    data_dir=...)``.

    Raises:
      ValueError: ``name`` is not a known data set.
    """
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}"
        )
    return DATASETS[name](**kwargs)
