"""CIFAR-10 through TensorFlow Datasets (optional extra ``jaxattr[cifar]``).

Amorim et al. (2020, §III-A, Table I) use all 60 000 CIFAR-10 images (32×32×3,
10 classes): train and test are combined and split by 10-fold cross-validation, so
:func:`load_cifar10` returns both splits concatenated.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["INSTALL_HINT", "load_cifar10"]

INSTALL_HINT = "pip install 'jaxattr[cifar]'"
_CHUNK = 10_000


def _import_tfds() -> Any:
    try:
        import tensorflow  # noqa: F401  (tfds builds its pipelines with tf.data)
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError(
            "CIFAR-10 is loaded with tensorflow-datasets and tensorflow, which are "
            f"not installed ({err}); install them with: {INSTALL_HINT}"
        ) from err
    return tfds


def _split_to_numpy(tfds: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """All (image, label) pairs of a tf.data split as two numpy arrays.

    Batches of 10 000 are concatenated rather than asking tfds for the whole split
    at once (``batch_size=-1``): that needs the split size from the dataset's
    metadata and, where it is unknown (as under ``tfds.testing.mock_data``), makes
    tf.data allocate a batch of ``sys.maxsize``.
    """
    images, labels = [], []
    for x, y in tfds.as_numpy(dataset.batch(_CHUNK)):
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    *,
    splits: Sequence[str] = ("train", "test"),
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 as NHWC float32 images in [0, 1] and int32 labels.

    The first call downloads and prepares the data set (about 160 MB) into
    ``data_dir`` (tfds' default, ``~/tensorflow_datasets``, when ``None``); later
    calls read the prepared copy and need no network.

    Args:
      data_dir: where tfds keeps the prepared data.
      splits: tfds split names, concatenated in this order; the default gives the
        50 000 training images followed by the 10 000 test images. Slices such as
        ``"train[:1000]"`` work.
      download: allow downloading and preparing when no prepared copy exists.

    Returns:
      ``(x, y)``: ``x`` float32 ``(n, 32, 32, 3)`` scaled by 1/255, ``y`` int32
      ``(n,)`` in 0..9.

    Raises:
      ImportError: tensorflow-datasets or tensorflow is missing
        (``pip install 'jaxattr[cifar]'``).
      RuntimeError: the data could not be prepared or read (e.g. no network and
        no prepared copy in ``data_dir``).
    """
    if isinstance(splits, str) or not splits:
        raise ValueError(
            f"splits must be a non-empty sequence of split names such as "
            f"('train', 'test'), got {splits!r}"
        )
    tfds = _import_tfds()
    try:
        datasets = tfds.load(
            "cifar10",
            split=list(splits),
            data_dir=None if data_dir is None else os.fspath(data_dir),
            as_supervised=True,
            download=download,
        )
        parts = [_split_to_numpy(tfds, ds) for ds in datasets]
    except Exception as err:  # tfds raises many kinds (download, I/O, assertion)
        where = data_dir or "tfds' default data_dir (~/tensorflow_datasets)"
        raise RuntimeError(
            f"CIFAR-10 could not be prepared or read in {where}: "
            f"{type(err).__name__}: {err}. The first load downloads the data set "
            "and needs network access (or copy a prepared tensorflow_datasets "
            f"directory there and pass data_dir); the loader needs {INSTALL_HINT}."
        ) from err
    x = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    y = np.concatenate([p[1] for p in parts]).astype(np.int32)
    return x, y
