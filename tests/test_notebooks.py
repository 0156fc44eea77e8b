"""The notebooks run end to end at a small size (JAXATTR_SMALL=1)."""

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = pathlib.Path(__file__).parents[1] / "notebooks"


def run_notebook(name: str, tmp_path) -> dict:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    os.environ["JAXATTR_SMALL"] = "1"
    try:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.pop("JAXATTR_SMALL", None)
    return nb


def test_quickstart(tmp_path):
    nb = run_notebook("quickstart.ipynb", tmp_path)
    assert (tmp_path / "quickstart_heatmaps.png").stat().st_size > 10_000
    assert (tmp_path / "quickstart_curves.png").stat().st_size > 10_000
    outputs = "".join(str(o) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "test accuracy" in outputs and "aopc" in outputs


@pytest.mark.slow
def test_amorim_reproduction(tmp_path):
    nb = run_notebook("amorim_reproduction.ipynb", tmp_path)
    assert (tmp_path / "runs" / "amorim_notebook" / "results.csv").exists()
    outputs = "".join(str(o) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "study done" in outputs
