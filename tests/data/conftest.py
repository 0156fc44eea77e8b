"""Fixtures of the data tests."""
import tempfile

import pytest


@pytest.fixture
def tmp_tempdir(tmp_path, monkeypatch):
    """Python's temporary folder moved into ``tmp_path`` for one test.

    tfds leaves an empty ``tmp…tfds`` folder in the system temporary folder each time it
    builds a data set's metadata (``DatasetInfo.initialize_from_bucket``, also under
    ``tfds.testing.mock_data``); with this the tests leave nothing outside ``tmp_path``.
    """
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path
