"""CIFAR-10 prepared by tfds from an archive in the original binary format, offline.

``tfds.testing.mock_data`` (tests/data/test_datasets.py) skips tfds' preparation step, which
is where a fresh install failed (issue #18: ``download_and_prepare`` imports
``importlib_resources``). Here a small ``cifar-10-binary.tar.gz`` written like the published one
(records of 1 label byte + 3072 pixel bytes, red then green then blue plane, in
``cifar-10-batches-bin/data_batch_1..5.bin``, ``test_batch.bin``, ``batches.meta.txt``) is put in
tfds' manual download folder, ``<data_dir>/downloads/manual/``, which tfds reads instead of the
network. tfds checks every archive against its registered checksum; the tests register the fake
archive's checksum for the CIFAR-10 URL (restored afterwards), so the check still runs and passes.
Everything is written under ``tmp_path``.
"""

import io
import shutil
import tarfile

import numpy as np
import pytest

from jaxattr import cli
from jaxattr.data import DatasetUnavailableError, load_cifar10, load_dataset

tfds = pytest.importorskip("tensorflow_datasets", reason="needs the [cifar] extra")
pytest.importorskip("tensorflow", reason="needs the [cifar] extra")

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: Images per class in each of the five training batches and in the test batch: 150 + 60 images,
#: enough for ``--quick``'s 2 folds (each training part holds out a stratified 10 % for
#: validation, which needs at least one image per class: 200 images at the least).
TRAIN_PER_CLASS, TEST_PER_CLASS = 3, 6


def _batch(rng, per_class):
    """``(images NHWC uint8, labels uint8)``: ``per_class`` random images of each class."""
    labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
    rng.shuffle(labels)
    return rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8), labels


def write_archive(path, seed=0):
    """Write a CIFAR-10 archive in the published binary format; return ``{split: (x, y)}``."""
    rng = np.random.default_rng(seed)
    batches = {f"data_batch_{i}.bin": _batch(rng, TRAIN_PER_CLASS) for i in range(1, 6)}
    batches["test_batch.bin"] = _batch(rng, TEST_PER_CLASS)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        def add(name, data):
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for name, (x, y) in batches.items():
            planes = x.transpose(0, 3, 1, 2).reshape(len(y), 3072)  # channel-major, as published
            add(name, np.concatenate([y[:, None], planes], axis=1).tobytes())
        add("batches.meta.txt", ("\n".join(NAMES) + "\n\n").encode())
    train = [batches[f"data_batch_{i}.bin"] for i in range(1, 6)]
    return {"train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
            "test": batches["test_batch.bin"]}


@pytest.fixture
def archive(tmp_path, monkeypatch, tmp_tempdir):
    """``(data_dir, written)``: the fake archive in ``data_dir``'s manual folder, its checksum
    registered for the CIFAR-10 URL (the real one is restored after the test)."""
    data_dir = tmp_path / "tensorflow_datasets"
    path = data_dir / "downloads" / "manual" / "cifar-10-binary.tar.gz"
    written = write_archive(path)
    checksums = tfds.download.checksums
    url_info = checksums.compute_url_info(path)
    # The download manager starts from tfds' global registry and updates it with the builder's
    # own checksum file: both must name the fake archive.
    monkeypatch.setitem(checksums.get_all_url_infos(), URL, url_info)
    monkeypatch.setattr(tfds.builder_cls("cifar10"), "url_infos", {URL: url_info})
    return data_dir, written


def _rows(x, y):
    """Examples as sorted byte strings: tfds shuffles the written order, so compare multisets."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        x = np.rint(x * 255.0).astype(np.uint8)
    return sorted(bytes([int(label)]) + image.tobytes() for image, label in zip(x, y))


def _assert_same_examples(got, expected):
    assert len(got[1]) == len(expected[1])
    assert _rows(*got) == _rows(*expected)


def test_download_and_prepare_reads_back_the_archive(archive, tmp_path):
    data_dir, written = archive
    builder = tfds.builder("cifar10", data_dir=str(data_dir))
    builder.download_and_prepare()  # offline: tfds takes the archive from downloads/manual
    assert builder.info.features["label"].names == list(NAMES)
    assert builder.info.splits["train"].num_examples == 50 * TRAIN_PER_CLASS
    assert builder.info.splits["test"].num_examples == 10 * TEST_PER_CLASS

    for split in ("train", "test"):
        x, y = load_cifar10(data_dir, splits=(split,), download=False)
        assert x.dtype == np.float32 and y.dtype == np.int32 and x.shape[1:] == (32, 32, 3)
        _assert_same_examples((x, y), written[split])

    # The README's route to a machine without network: copy the prepared cifar10/ folder alone.
    copy = tmp_path / "elsewhere"
    shutil.copytree(data_dir / "cifar10", copy / "cifar10")
    x, y = load_cifar10(copy, download=False)
    _assert_same_examples((x[: len(written["train"][1])], y[: len(written["train"][1])]),
                          written["train"])
    assert len(y) == 50 * TRAIN_PER_CLASS + 10 * TEST_PER_CLASS


def test_study_cifar10_quick_prepares_the_archive_end_to_end(archive, tmp_path, monkeypatch,
                                                              capsys):
    data_dir, written = archive
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))  # the loader reads it at call time
    out = tmp_path / "c10"
    argv = ["study", "--dataset", "cifar10", "--quick", "--epochs", "1", "--groups", "A",
            "--methods", "gradient", "--eval-size", "8", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert (data_dir / "cifar10" / "3.0.2" / "dataset_info.json").exists()  # prepared by the study
    results = (out / "results.csv").read_text().splitlines()
    assert len(results) > 1 and all(row.startswith("cifar10,") for row in results[1:])
    # The study saw exactly the archive's images: train then test, as load_dataset gives them.
    x, y = load_dataset("cifar10")
    _assert_same_examples((x, y), tuple(np.concatenate(p) for p in zip(written["train"],
                                                                        written["test"])))


class _NameResolutionError(Exception):
    pass


_NameResolutionError.__name__ = "NameResolutionError"  # as urllib3 names it


def _module_missing():
    raise ModuleNotFoundError("No module named 'importlib_resources'", name="importlib_resources")


def _offline():
    try:
        raise _NameResolutionError("Failed to resolve 'www.cs.toronto.edu'")
    except _NameResolutionError as err:
        raise OSError("download failed") from err


def _incompatible():
    raise ImportError("cannot import name 'Traversable' from 'importlib_resources.abc'")


@pytest.mark.parametrize("fail, error, match", [
    (_module_missing, ImportError,
     r"needs the Python module 'importlib_resources'.*not a network problem.*"
     r"pip install 'jaxattr\[cifar\]'.*pip install importlib_resources"),
    (_offline, DatasetUnavailableError, r"Downloading cifar-10-binary\.tar\.gz .* failed.*network"
                                        r".*downloads/manual"),
    (_incompatible, ImportError, r"cannot import name 'Traversable'.*incompatible package versions"
                                 r".*pip install -U 'jaxattr\[cifar\]'"),
], ids=["missing-module", "offline", "incompatible-versions"])
def test_preparation_failure_names_its_cause(fail, error, match, tmp_path, monkeypatch):
    """A failure inside tfds is reported by cause (package, network, archive) with the fix."""
    def load(*args, **kwargs):
        fail()

    monkeypatch.setattr(tfds, "load", load)
    with pytest.raises(error, match=match) as info:
        load_cifar10(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_an_archive_that_is_not_the_published_one_is_named(tmp_path, tmp_tempdir):
    """Without the test's checksum registration tfds rejects the fake archive; the error says so."""
    data_dir = tmp_path / "tensorflow_datasets"
    write_archive(data_dir / "downloads" / "manual" / "cifar-10-binary.tar.gz")
    with pytest.raises(DatasetUnavailableError, match=r"(?s)NonMatchingChecksumError.*"
                                                      r"not the published archive.*delete it"):
        load_cifar10(data_dir)


def test_study_reports_a_missing_module_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tfds, "load", lambda *a, **k: _module_missing())
    argv = ["study", "--dataset", "cifar10", "--quick", "--no-progress", "--out", str(tmp_path)]
    assert cli.main(argv) == 2
    assert "importlib_resources" in capsys.readouterr().err
