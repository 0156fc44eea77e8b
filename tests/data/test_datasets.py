import builtins
import re

import numpy as np
import pytest

from jaxattr.data import DatasetUnavailableError, load_cifar10, load_dataset, load_digits


def test_load_digits_shapes_dtypes_and_range():
    x, y = load_digits()
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.unique(y), np.arange(10))
    np.testing.assert_array_equal(load_dataset("digits")[1], y)


def test_load_dataset_unknown_name_lists_the_known_ones():
    known = r"unknown dataset 'mnist'; known datasets: \['cifar10', 'digits'\]"
    with pytest.raises(ValueError, match=known):
        load_dataset("mnist")


def test_cifar10_through_tfds_mock_data(tmp_tempdir):
    tfds = pytest.importorskip(
        "tensorflow_datasets", reason="CIFAR-10 needs the [cifar] extra: pip install 'jaxattr[cifar]'"
    )
    pytest.importorskip("tensorflow", reason="tfds' mock data needs tensorflow ([cifar] extra)")
    with tfds.testing.mock_data(num_examples=7):
        x, y = load_dataset("cifar10")
        x_train, y_train = load_cifar10(splits=("train",))
    assert x.shape == (14, 32, 32, 3) and x.dtype == np.float32  # train + test
    assert y.shape == (14,) and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5  # scaled by 1/255
    assert y.min() >= 0 and y.max() <= 9
    assert x_train.shape == (7, 32, 32, 3)
    np.testing.assert_array_equal(y_train, y[:7])


def test_cifar10_without_prepared_data_names_the_fix(tmp_path, tmp_tempdir):
    pytest.importorskip("tensorflow_datasets", reason="needs the [cifar] extra")
    pytest.importorskip("tensorflow", reason="needs the [cifar] extra")
    empty = tmp_path / "empty"
    empty.mkdir()
    where = re.escape(str(empty))
    match = (rf"could not be prepared or read in {where}: .*No prepared copy was found and "
             rf"download=False.*prepared 'cifar10' folder.*{where}/downloads/manual")
    with pytest.raises(DatasetUnavailableError, match=match):
        load_cifar10(empty, download=False)


def test_cifar10_without_tfds_names_the_install_step(monkeypatch):
    real_import = builtins.__import__

    def no_tfds(name, *args, **kwargs):
        if name.startswith(("tensorflow_datasets", "tensorflow")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tfds)
    with pytest.raises(ImportError, match=r"pip install 'jaxattr\[cifar\]'"):
        load_cifar10()


def test_cifar10_rejects_a_single_split_string():
    with pytest.raises(ValueError, match=r"splits must be a non-empty sequence.*got 'train'"):
        load_cifar10(splits="train")
