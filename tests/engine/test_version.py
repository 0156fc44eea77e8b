"""The engine refuses jax versions whose jaxpr it was not tested on."""

import jax
import pytest

from jaxattr.engine import TESTED_JAX, check_jax_version


def test_installed_jax_is_a_tested_version():
    # Fails loudly when CI installs a jax outside the tested range: rerun the suite on it,
    # then add it to TESTED_JAX (and pyproject.toml's pin).
    check_jax_version(jax.__version__)


@pytest.mark.parametrize("version", ["0.4.30", "0.11.0", "1.0.0"])
def test_unknown_versions_fail_loudly(version):
    with pytest.raises(RuntimeError, match="tested on jax"):
        check_jax_version(version)


def test_pyproject_pin_matches_tested_range():
    import pathlib
    import tomllib

    meta = tomllib.loads((pathlib.Path(__file__).parents[2] / "pyproject.toml").read_text())
    pins = [d for d in meta["project"]["dependencies"] if d.startswith("jax>=")]
    assert pins, "jax must be pinned in pyproject.toml"
    for major, minor in TESTED_JAX:
        assert f"{major}.{minor}" in pins[0]
