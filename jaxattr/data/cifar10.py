"""CIFAR-10 through TensorFlow Datasets (optional extra ``jaxattr[cifar]``).

Amorim et al. (2020, §III-A, Table I) use all 60 000 CIFAR-10 images (32×32×3,
10 classes): train and test are combined and split by 10-fold cross-validation, so
:func:`load_cifar10` returns both splits concatenated.

The first load downloads ``cifar-10-binary.tar.gz`` and has tfds prepare it (write
TFRecords) in the data directory; later loads only read. Without network access,
either copy a prepared ``cifar10/`` folder into the data directory, or put the
original archive in ``<data_dir>/downloads/manual/``, where tfds takes it instead of
downloading (checked against tfds' registered checksum).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["INSTALL_HINT", "DatasetUnavailableError", "default_data_dir", "load_cifar10"]

INSTALL_HINT = "pip install 'jaxattr[cifar]'"
ARCHIVE = "cifar-10-binary.tar.gz"
_CHUNK = 10_000
# Exceptions (by class name, anywhere in the chain) that mean the download itself
# failed: requests' and urllib3's connection errors, tfds' DownloadError.
_NETWORK_ERRORS = frozenset({
    "ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "MaxRetryError",
    "NameResolutionError", "NewConnectionError", "SSLError", "DownloadError",
})


class DatasetUnavailableError(RuntimeError):
    """A data set could not be prepared or read; the message says why and what to do."""


def default_data_dir() -> str:
    """Where CIFAR-10 is kept when no ``data_dir`` is given.

    ``$TFDS_DATA_DIR`` if set, else ``~/tensorflow_datasets`` (tfds' own rule, read
    at call time rather than when tfds is imported, so the variable can be set late
    and error messages name the real folder).
    """
    return os.environ.get("TFDS_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), "tensorflow_datasets"
    )


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


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and its causes/contexts, outermost first (tfds re-raises inside promises)."""
    seen: list[BaseException] = []
    while err is not None and not any(err is e for e in seen):
        seen.append(err)
        err = err.__cause__ or err.__context__
    return seen


def _explain_failure(err: Exception, data_dir: str, download: bool) -> Exception:
    """The error to raise for a failed ``tfds.load``, naming its cause and the fix.

    tfds reports a missing package, an unreachable server, a wrong archive and an
    absent prepared copy through many exception types; a user needs to know which
    one it was, since the fixes differ (install, network or copy, delete).
    """
    chain = _chain(err)
    cause = f"{type(err).__name__}: {err}"
    failed_import = next((e for e in chain if isinstance(e, ImportError)), None)
    if isinstance(failed_import, ModuleNotFoundError) and failed_import.name:
        module = failed_import.name
        return ImportError(
            f"CIFAR-10 could not be prepared or read in {data_dir}: tensorflow-datasets "
            f"needs the Python module {module!r}, which is not installed ({cause}). "
            f"This is a missing package, not a network problem: run {INSTALL_HINT} "
            f"or pip install {module.split('.')[0]}."
        )
    if failed_import is not None:
        return ImportError(
            f"CIFAR-10 could not be prepared or read in {data_dir}: an import inside "
            f"tensorflow-datasets failed ({cause}), which points to incompatible package "
            f"versions, not to the network: run pip install -U 'jaxattr[cifar]'."
        )
    names = {type(e).__name__ for e in chain}
    offline = (
        "On a machine without network access, copy a prepared 'cifar10' folder "
        f"(from a tensorflow_datasets folder where it was prepared) into {data_dir}, "
        f"or put the original {ARCHIVE} into {os.path.join(data_dir, 'downloads', 'manual')} "
        "and tfds prepares it from there (see the README, 'CIFAR-10')."
    )
    if "NonMatchingChecksumError" in names:
        advice = (
            f"The downloaded or manually placed {ARCHIVE} is not the published archive "
            "(its checksum differs): delete it and load again."
        )
    elif names & _NETWORK_ERRORS:
        advice = (
            f"Downloading {ARCHIVE} (about 160 MB, from www.cs.toronto.edu) failed: the "
            f"first load needs network access. {offline}"
        )
    elif not download:
        advice = f"No prepared copy was found and download=False. {offline}"
    else:
        advice = f"If the download failed: {offline}"
    return DatasetUnavailableError(
        f"CIFAR-10 could not be prepared or read in {data_dir}: {cause}. {advice}"
    )


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    *,
    splits: Sequence[str] = ("train", "test"),
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 as NHWC float32 images in [0, 1] and int32 labels.

    The first call downloads ``cifar-10-binary.tar.gz`` (about 160 MB) and prepares
    it into ``data_dir``; later calls read the prepared copy and need no network.
    An archive already in ``<data_dir>/downloads/manual/`` is used instead of
    downloading it.

    Args:
      data_dir: where tfds keeps the prepared data; ``None``:
        :func:`default_data_dir` (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      splits: tfds split names, concatenated in this order; the default gives the
        50 000 training images followed by the 10 000 test images. Slices such as
        ``"train[:1000]"`` work.
      download: allow downloading and preparing when no prepared copy exists.

    Returns:
      ``(x, y)``: ``x`` float32 ``(n, 32, 32, 3)`` scaled by 1/255, ``y`` int32
      ``(n,)`` in 0..9.

    Raises:
      ImportError: tensorflow-datasets, tensorflow or a module tfds needs to prepare
        the data is missing (``pip install 'jaxattr[cifar]'``).
      DatasetUnavailableError: (a ``RuntimeError``) the data could not be prepared
        or read; the message says whether the download failed, the archive was
        wrong or no prepared copy exists, and what to do.
    """
    if isinstance(splits, str) or not splits:
        raise ValueError(
            f"splits must be a non-empty sequence of split names such as "
            f"('train', 'test'), got {splits!r}"
        )
    tfds = _import_tfds()
    where = os.fspath(data_dir) if data_dir is not None else default_data_dir()
    try:
        datasets = tfds.load(
            "cifar10",
            split=list(splits),
            data_dir=where,
            as_supervised=True,
            download=download,
        )
        parts = [_split_to_numpy(tfds, ds) for ds in datasets]
    except Exception as err:  # tfds raises many kinds (import, download, I/O, assertion)
        raise _explain_failure(err, where, download) from err
    x = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    y = np.concatenate([p[1] for p in parts]).astype(np.int32)
    return x, y
