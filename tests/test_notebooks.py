"""The notebooks in notebooks/ run headless from top to bottom (nbclient, a fresh kernel
each), and are stored without outputs."""

from __future__ import annotations

import glob
import os

import pytest

import tfcore

NOTEBOOKS = sorted(
    glob.glob(
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks", "*.ipynb")
    )
)


def test_the_notebooks_are_there():
    names = {os.path.basename(p) for p in NOTEBOOKS}
    assert len(NOTEBOOKS) >= 6 and "08_evaluation_pipelines.ipynb" in names, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_stored_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{path}: strip outputs before committing"
            )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_runs_headless(path, monkeypatch, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    # the kernel imports the tfcore under test and draws with a non-GUI backend; tfcore's
    # progress bars are left on as a user's notebook has them (TFCORE_PROGRESS unset)
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(os.path.dirname(tfcore.__file__)))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("TFCORE_PROGRESS", raising=False)
    # engine workers share packed weights through a weight cache: the test's, not ~/.cache
    monkeypatch.setenv("TFCORE_WEIGHT_CACHE", str(tmp_path / "weight-cache"))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(path)}}
    ).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    # quiet: no tqdm "IProgress not found" widget warning (tfcore draws plain bars without
    # ipywidgets), no warnings at all on stderr
    stderr = "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream" and o.get("name") == "stderr"
    )
    assert "IProgress" not in stderr, stderr[:2000]
    assert "Warning" not in stderr, stderr[:2000]
