"""The tutorial notebooks: committed clean, and runnable end to end in smoke mode.

Every ``notebooks/*.ipynb`` is executed with papermill (``SMOKE=True``) on the real data
under ``$SUPERSUB_DATA_DIR``; without that data the execution tests skip. The kernel is
pinned to the interpreter running the tests (a temporary ``python3`` kernelspec first on
``JUPYTER_PATH``), so a user-wide ``python3`` kernel of another Python cannot be picked.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
COLAB_URL = "https://colab.research.google.com/github/supersub-tf/supersub_tf/blob/main/notebooks/"
TINY_ARCHIVES = ("tiny-imagenet-67.zip", "tiny-imagenet-200.zip")
KERNEL_NAME = "python3"


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def _read(path: Path):
    return nbformat.read(path, as_version=4)


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``python3`` kernelspec that runs this interpreter, first on ``JUPYTER_PATH``.

    Also points ``SUPERSUB_CACHE_DIR`` at a fresh folder; the kernel inherits both.
    """
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"Python 3 ({sys.prefix})", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    paths = [str(tmp_path / "jupyter")] + [p for p in os.environ.get("JUPYTER_PATH", "")
                                            .split(os.pathsep) if p]
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(paths))
    monkeypatch.setenv("SUPERSUB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _execute(path: Path, out: Path, parameters: dict | None = None):
    papermill = pytest.importorskip("papermill")
    return papermill.execute_notebook(str(path), str(out), parameters=parameters or {},
                                      kernel_name=KERNEL_NAME, cwd=str(REPO_ROOT),
                                      progress_bar=False, log_output=False,
                                      execution_timeout=600)


def _data_dir_or_skip() -> Path:
    env = os.environ.get("SUPERSUB_DATA_DIR")
    if not env:
        pytest.skip("SUPERSUB_DATA_DIR is not set; the notebooks run on the real data")
    root = Path(env)
    if not any((root / name).is_file() for name in TINY_ARCHIVES):
        pytest.skip(f"SUPERSUB_DATA_DIR={root} has neither {' nor '.join(TINY_ARCHIVES)}")
    return root


# ------------------------------------------------------------------------ static checks
def test_notebooks_exist() -> None:
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_committed_clean(path: Path) -> None:
    nb = _read(path)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {cell.get('id')} has outputs"
            assert cell.execution_count is None, (f"{path.name}: cell {cell.get('id')} has an "
                                                  "execution count")
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL_NAME


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_has_smoke_parameter(path: Path) -> None:
    tagged = [c for c in _read(path).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters'"
    assert tagged[0].cell_type == "code" and "SMOKE" in tagged[0].source


# Modules every Jupyter or Colab kernel has, so no set-up cell installs them.
KERNEL_MODULES = {"IPython", "ipykernel"}


def _imports(nb) -> set[str]:
    """Top-level modules a notebook's code cells import (magics and shell lines skipped)."""
    import ast

    modules = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines()
                         if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - KERNEL_MODULES


def _declared_distributions() -> set[str]:
    """supersub_tf and the distributions pyproject.toml makes it depend on."""
    import re
    import tomllib

    project = tomllib.loads((NOTEBOOK_DIR.parent / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0] for dep in project["dependencies"]}
    return {n.lower().replace("_", "-") for n in names | {project["name"]}}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_setup_cell_installs_every_import(path: Path) -> None:
    """The set-up cell installs the package, whose dependencies must provide every module
    the notebook imports; it also says when Colab needs a runtime restart."""
    from importlib.metadata import packages_distributions

    nb = _read(path)
    setup = next(c for c in nb.cells if c.cell_type == "code").source
    assert '%pip install -q "supersub_tf @ ' in setup, f"{path.name}: no install in set-up"
    assert "Restart session" in setup, f"{path.name}: set-up cell does not say when to restart"
    declared = _declared_distributions()
    providers = packages_distributions()
    for module in sorted(_imports(nb)):
        if module == "supersub_tf":
            continue
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        assert dists & declared, (f"{path.name} imports {module} (from {sorted(dists)}), "
                                  "which the set-up cell's install does not bring: add it to "
                                  "pyproject.toml's dependencies")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_has_colab_badge(path: Path) -> None:
    markdown = "\n".join(c.source for c in _read(path).cells if c.cell_type == "markdown")
    assert COLAB_URL + path.name in markdown, f"{path.name}: no Open in Colab badge"


# ------------------------------------------------------------------------ execution
def test_kernel_runs_this_interpreter(kernel_env: Path) -> None:
    """The ``python3`` kernel the notebooks run with is this (the venv's) interpreter."""
    probe = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import sys; print(sys.prefix); print(sys.executable)")])
    probe.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3",
                                    "language": "python"}
    nbformat.write(probe, kernel_env / "probe.ipynb")
    result = _execute(kernel_env / "probe.ipynb", kernel_env / "probe_out.ipynb")
    prefix, executable = result.cells[0].outputs[0]["text"].split()[:2]
    assert prefix == sys.prefix, f"kernel runs {executable}, tests run {sys.executable}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
@pytest.mark.slow
def test_notebook_runs_in_smoke_mode(path: Path, kernel_env: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Each notebook end to end in smoke mode. Notebook 01 runs with no ImageNet metadata
    on disk (only the Tiny ImageNet archive), as on Colab, when WordNet 3.0 is installed
    to take its place."""
    data = _data_dir_or_skip()
    if path.name.startswith("01_") and Path("/usr/share/wordnet/data.noun").is_file():
        bare = kernel_env / "data_without_metadata"
        bare.mkdir()
        for name in TINY_ARCHIVES:
            if (data / name).is_file():
                (bare / name).symlink_to(data / name)
        monkeypatch.setenv("SUPERSUB_DATA_DIR", str(bare))
    out = kernel_env / path.name
    start = time.perf_counter()
    result = _execute(path, out, parameters={"SMOKE": True})
    elapsed = time.perf_counter() - start
    errors = [o for c in result.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    print(f"{path.name}: smoke run {elapsed:.1f} s")
