"""What a training run records (shared by the loop and checkpoints)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["TrainHistory"]


class TrainHistory(NamedTuple):
    """Per-epoch metrics of :func:`~jaxattr.training.loop.train` or ``train_grid``.

    For a grid every field has a leading configuration axis. Per-epoch fields have
    a last axis of length ``epochs run`` (the longest configuration); epochs after a
    configuration stopped hold NaN.

    Attributes:
      train_loss: mean training cross-entropy of each epoch (without penalty).
      val_loss: the monitored validation loss: cross-entropy, plus the L2 penalty
        ``λ Σ w²`` when the decay is coupled (Keras includes regularisation losses
        in ``val_loss``).
      val_accuracy: validation accuracy of each epoch.
      best_epoch: 0-based epoch whose parameters were kept.
      best_val_loss: ``val_loss`` at ``best_epoch``.
      epochs_trained: epochs each configuration trained before it stopped.
    """

    train_loss: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    best_epoch: np.ndarray
    best_val_loss: np.ndarray
    epochs_trained: np.ndarray
