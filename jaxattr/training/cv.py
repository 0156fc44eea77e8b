"""Stratified cross-validation folds, as in Amorim et al. (2020, §III-A).

"The training set and test set were combined and 10-fold cross-validation was
used": :func:`stratified_folds` splits the union of the two sets into ``k``
stratified folds (scikit-learn's ``StratifiedKFold``, shuffled with ``seed``); fold
``i`` is the test set of run ``i`` and the other ``k - 1`` folds train it. Early
stopping needs a validation set the paper does not describe: a stratified
``val_fraction`` of each training part is held out for it (our choice, 10 %).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from jaxattr.training._checks import check_examples, check_labels

__all__ = ["Fold", "split_fold", "stratified_folds"]


class Fold(NamedTuple):
    """Example indices of one cross-validation run (disjoint, sorted)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def stratified_folds(
    y: Any, n_folds: int = 10, *, val_fraction: float = 0.1, seed: int = 0
) -> list[Fold]:
    """``n_folds`` stratified folds over all examples, each with a validation split.

    Args:
      y: integer class labels of every example (train and test concatenated).
      n_folds: number of folds ``k`` ≥ 2 (the paper: 10).
      val_fraction: share of each training part held out, stratified, for early
        stopping; in (0, 1).
      seed: shuffles the folds and the validation splits; the same seed gives the
        same folds.

    Returns:
      ``n_folds`` :class:`Fold`\\ s whose ``test`` parts partition the examples.

    Examples:
      >>> y = np.repeat(np.arange(3), 20)
      >>> folds = stratified_folds(y, 5, seed=0)
      >>> [len(f.test) for f in folds], len(folds[0].train), len(folds[0].val)
      ([12, 12, 12, 12, 12], 43, 5)
    """
    check_labels(y, "y")
    y = np.asarray(y)
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if not (isinstance(val_fraction, (int, float)) and 0 < val_fraction < 1):
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    counts = np.bincount(y - y.min())
    smallest = int(counts[counts > 0].min())
    if smallest < n_folds:
        raise ValueError(
            f"n_folds={n_folds} needs at least {n_folds} examples of every class in "
            f"y, but one class has only {smallest}"
        )
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = []
    for i, (train_val, test) in enumerate(splitter.split(np.zeros(len(y)), y)):
        train, val = train_test_split(
            train_val,
            test_size=val_fraction,
            stratify=y[train_val],
            random_state=np.random.RandomState([seed, i]),
        )
        folds.append(Fold(np.sort(train), np.sort(val), np.sort(test)))
    return folds


def split_fold(
    x: Any, y: Any, fold: Fold
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """``(x_train, y_train, x_val, y_val, x_test, y_test)`` of ``fold``."""
    check_examples(x, y, "x", "y")
    return (
        x[fold.train], y[fold.train],
        x[fold.val], y[fold.val],
        x[fold.test], y[fold.test],
    )
