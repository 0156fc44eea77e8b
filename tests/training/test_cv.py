import numpy as np
import pytest

from jaxattr.data import load_digits
from jaxattr.training import split_fold, stratified_folds


@pytest.fixture(scope="module")
def y():
    return load_digits()[1]


def test_folds_partition_the_examples_and_are_disjoint(y):
    folds = stratified_folds(y, 10, seed=0)
    assert len(folds) == 10
    tests = np.concatenate([f.test for f in folds])
    np.testing.assert_array_equal(np.sort(tests), np.arange(len(y)))
    for f in folds:
        parts = np.concatenate([f.train, f.val, f.test])
        np.testing.assert_array_equal(np.sort(parts), np.arange(len(y)))


def test_folds_and_validation_splits_are_stratified(y):
    overall = np.bincount(y) / len(y)
    for f in stratified_folds(y, 10, val_fraction=0.1, seed=1):
        for part in (f.test, f.val, f.train):
            share = np.bincount(y[part], minlength=10) / len(part)
            assert np.abs(share - overall).max() < 0.02
        assert len(f.val) == pytest.approx(0.1 * (len(f.val) + len(f.train)), abs=1)


def test_same_seed_same_folds_other_seed_other_folds(y):
    a, b, c = (stratified_folds(y, 5, seed=s) for s in (3, 3, 4))
    for fa, fb in zip(a, b):
        for part_a, part_b in zip(fa, fb):
            np.testing.assert_array_equal(part_a, part_b)
    assert not np.array_equal(a[0].test, c[0].test)


def test_split_fold_returns_the_fold_arrays(y):
    x = np.arange(len(y), dtype=np.float32)[:, None]
    fold = stratified_folds(y, 5, seed=0)[2]
    x_tr, y_tr, x_val, y_val, x_te, y_te = split_fold(x, y, fold)
    np.testing.assert_array_equal(x_tr[:, 0], fold.train)
    np.testing.assert_array_equal(y_val, y[fold.val])
    np.testing.assert_array_equal(x_te[:, 0], fold.test)


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((np.zeros(30, np.int32),), dict(n_folds=1), ValueError,
         "n_folds must be an integer >= 2, got 1"),
        ((np.zeros(30, np.int32),), dict(val_fraction=1.0), ValueError,
         r"val_fraction must be in \(0, 1\), got 1.0"),
        ((np.zeros(30, np.float32),), {}, TypeError, "y must have an integer dtype.*got float32"),
        ((np.zeros((30, 1), np.int32),), {}, ValueError,
         r"y must be 1-D \(examples,\), got shape \(30, 1\)"),
        ((np.repeat([0, 1], [20, 3]).astype(np.int32),), dict(n_folds=5), ValueError,
         "n_folds=5 needs at least 5 examples of every class in y, but one class has only 3"),
    ],
)
def test_bad_input_is_rejected(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        stratified_folds(*args, **kwargs)
