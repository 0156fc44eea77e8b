"""Save and restore trained parameters with orbax-checkpoint.

A checkpoint is a directory holding ``{"params": ..., "history": ...}`` as numpy
arrays (device placement and sharding are dropped on purpose, so a grid trained on
several devices restores anywhere). orbax writes into a temporary directory and
renames it when complete, so an interrupted save leaves no half checkpoint; the
study uses this to skip units already trained.

In a multi-process run (``jax.distributed``) orbax saves collectively: every process writes
its shards of one global tree, and numpy leaves only from process 0. A study process saves and
reads the checkpoints of its own units alone, so both run as a one-process checkpoint
(:func:`_process_local`): the same files a single-process run writes, readable by any number
of processes later.
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxattr.training.history import TrainHistory

__all__ = ["checkpoint_exists", "load_checkpoint", "save_checkpoint"]

PyTree = Any

_ALONE = threading.Lock()


@contextlib.contextmanager
def _process_local():
    """Yield the orbax checkpointer to use: a plain one in a single process; in a multi-process
    run one that treats this process as the only one (process 0 of its own checkpoint, no
    barriers with the others), while orbax's process index reads 0."""
    if jax.process_count() == 1:
        yield ocp.PyTreeCheckpointer()
        return
    from orbax.checkpoint._src.multihost import multihost

    alone = ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
    checkpointer = ocp.Checkpointer(ocp.PyTreeCheckpointHandler(multiprocessing_options=alone),
                                    multiprocessing_options=alone)
    with _ALONE:
        real = multihost.process_index
        multihost.process_index = lambda: 0
        try:
            yield checkpointer
        finally:
            multihost.process_index = real


def _path(directory: str | os.PathLike) -> Path:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(
            f"directory must be a str or path, got {type(directory).__name__}"
        )
    return Path(directory).expanduser().absolute()


def checkpoint_exists(directory: str | os.PathLike) -> bool:
    """Whether a complete checkpoint is stored at ``directory``."""
    path = _path(directory)
    return path.is_dir() and (path / "_CHECKPOINT_METADATA").exists()


def save_checkpoint(
    directory: str | os.PathLike,
    params: PyTree,
    history: TrainHistory | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``params`` (and the run's ``history``) to ``directory``.

    Args:
      directory: target directory; it must not exist unless ``overwrite``.
      params: parameter tree (single or stacked over configurations).
      history: optional :class:`~jaxattr.training.history.TrainHistory`.
      overwrite: replace an existing checkpoint.

    Returns:
      The absolute path written.
    """
    path = _path(directory)
    tree = {"params": jax.tree.map(np.asarray, jax.device_get(params))}
    if history is not None:
        tree["history"] = {k: np.asarray(v) for k, v in history._asdict().items()}
    with _process_local() as checkpointer:
        checkpointer.save(path, tree, force=overwrite)
    return path


def load_checkpoint(
    directory: str | os.PathLike,
) -> tuple[PyTree, TrainHistory | None]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns:
      ``(params, history)`` as numpy arrays; ``history`` is ``None`` when none was
      saved.

    Raises:
      FileNotFoundError: no complete checkpoint at ``directory``.
    """
    path = _path(directory)
    if not checkpoint_exists(path):
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    with _process_local() as checkpointer:
        tree = checkpointer.restore(path)
    history = tree.get("history")
    if history is not None:
        history = TrainHistory(**{k: np.asarray(history[k]) for k in TrainHistory._fields})
    return tree["params"], history
