"""The tutorial notebooks: committed clean, runnable end to end in smoke mode, able to
read a finished run instead of training, and rendered with their outputs.

Every ``notebooks/*.ipynb`` is executed with papermill (``SMOKE=True``) on the real data
under ``$SUPERSUB_DATA_DIR``; without that data the execution tests skip. Notebooks 02 to
05 are also executed with ``RUN_DIR`` on a finished tiny run (``tiny_supersub_run``) or
the committed scaling record, and must leave the run's folder as it was. The kernel is
pinned to the interpreter running the tests (a temporary ``python3`` kernelspec first on
``JUPYTER_PATH``), so a user-wide ``python3`` kernel of another Python cannot be picked.
``docs/render_tutorials.py`` (the rendered copies in ``docs/tutorials/``) is tested here
too: its links from ``pyproject.toml``, its provenance lines, its images and one render.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import time
import tomllib
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
RENDER_SCRIPT = REPO_ROOT / "docs" / "render_tutorials.py"
SCALING_RECORD = REPO_ROOT / "benchmarks" / "results" / "scaling_study_full.json"
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


@pytest.fixture(scope="module")
def render():
    """``docs/render_tutorials.py`` as a module."""
    spec = importlib.util.spec_from_file_location("render_tutorials", RENDER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
def test_notebook_has_smoke_and_run_dir_parameters(path: Path) -> None:
    tagged = [c for c in _read(path).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters'"
    assert tagged[0].cell_type == "code"
    assert re.search(r"^SMOKE = False\b", tagged[0].source, re.M), path.name
    assert re.search(r"^RUN_DIR = None\b", tagged[0].source, re.M), path.name


def _first_import(nb, prefixes: tuple[str, ...]) -> tuple[int, int] | None:
    """(cell, line) of the first import of a module under ``prefixes``, in run order."""
    import ast

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code_cells):
        code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                         for line in cell.source.splitlines())
        for node in sorted(ast.walk(ast.parse(code)), key=lambda n: getattr(n, "lineno", 0)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            if any(n.split(".")[0] in prefixes for n in names):
                return i, node.lineno
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_supersub_tf_is_imported_before_tensorflow(path: Path) -> None:
    """``import supersub_tf`` selects tf_keras and turns oneDNN off, which only works before
    TensorFlow loads: a notebook that imports TensorFlow first runs Keras 3 and the oneDNN
    kernels that crash on this project's CPUs (README, *Reliability*)."""
    nb = _read(path)
    package = _first_import(nb, ("supersub_tf",))
    tensorflow = _first_import(nb, ("tensorflow", "tf_keras", "tensorflow_model_optimization",
                                    "keras"))
    assert package is not None, f"{path.name} does not import supersub_tf"
    assert tensorflow is None or package < tensorflow, (
        f"{path.name}: imports TensorFlow (code cell {tensorflow[0]}, line {tensorflow[1]}) "
        f"before supersub_tf (code cell {package[0]}, line {package[1]})")


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


def _repository() -> str:
    """pyproject.toml's ``[project.urls] Repository``, the one place the address is written."""
    urls = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["urls"]
    return urls["Repository"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_links_are_pyprojects_repository(path: Path) -> None:
    """The Colab badge, the GitHub badge and the install cell name pyproject.toml's
    repository, and no other address of the project appears in the notebook."""
    repo = _repository()
    assert repo == "https://github.com/supersub-tf/supersub_tf"
    owner_name = repo.removeprefix("https://github.com/")
    nb = _read(path)
    badges = [c.source for c in nb.cells if c.cell_type == "markdown" and "colab-badge" in c.source]
    assert len(badges) == 1, f"{path.name}: expected one badge cell"
    hrefs = re.findall(r'href="([^"]+)"', badges[0])
    assert hrefs == [
        f"https://colab.research.google.com/github/{owner_name}/blob/main/notebooks/{path.name}",
        f"{repo}/blob/main/notebooks/{path.name}"], path.name
    installs = [m for c in nb.cells if c.cell_type == "code"
                for m in re.findall(r'%pip install -q "supersub_tf @ ([^"]+)"', c.source)]
    assert installs == [f"git+{repo}.git"], path.name
    everything = "\n".join(c.source for c in nb.cells)
    for url in re.findall(r"https://(?:colab\.research\.google\.com/github|github\.com)/"
                          r"[\w.-]+/[\w.-]+", everything):
        assert url.endswith(owner_name) or url.endswith(owner_name + ".git"), (
            f"{path.name} names {url}, not {repo}")


def test_sync_links_rewrites_a_stale_address(render, tmp_path: Path) -> None:
    source = NOTEBOOKS[0]
    stale = tmp_path / source.name
    stale.write_text(source.read_text().replace("supersub-tf/supersub_tf", "old-owner/old_name"))
    repo = render.repository_url()
    problems = render.link_problems(stale, repo)
    assert problems == [
        f"{source.name}: its badges do not point at {repo} (notebooks/{source.name} on main)",
        f"{source.name}: installs from git+https://github.com/old-owner/old_name.git, not "
        f"git+{repo}.git"]
    assert render.sync_links(stale, repo) is True
    assert render.link_problems(stale, repo) == []
    assert stale.read_text() == source.read_text()  # back to the committed notebook, byte for byte
    assert render.sync_links(stale, repo) is False
    assert render.main(["--check-links"]) == 0


def test_repository_url_is_checked(render, tmp_path: Path) -> None:
    from supersub_tf.errors import ConfigError

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n[project.urls]\n'
                         'Repository = "https://github.com/a/b.git/"\n')
    assert render.repository_url(pyproject) == "https://github.com/a/b"
    pyproject.write_text('[project]\nname = "x"\n[project.urls]\nHomepage = "https://a.org"\n')
    with pytest.raises(ConfigError, match=r"pyproject.toml: \[project.urls\] Repository must be "
                                          r"https://github.com/OWNER/NAME, got ''"):
        render.repository_url(pyproject)


def test_run_provenance_names_the_command_and_date(render, tmp_path: Path) -> None:
    """The first lines of a rendered tutorial: the main-job command that gives the run's
    settings (its config.yaml against the built-in default), its end and wall time."""
    from supersub_tf.config import load_config, save_config
    from supersub_tf.errors import DataError

    run = tmp_path / "seed1"
    run.mkdir()
    save_config(load_config("default", ["name=seed1", "seed=1", "output_dir=/elsewhere",
                                        "deltas.bits=[float, 4]", "train.verbose=2"]),
                run / "config.yaml")
    with pytest.raises(DataError, match="seed1: no report.json and config.yaml; not a finished"):
        render.run_provenance(run, "runs/seed1")
    (run / "report.json").write_text(json.dumps({"wall_seconds": 1827.0}))
    os.utime(run / "report.json", (1796594880, 1796594880))  # 2026-12-06 22:08 UTC
    assert render.run_provenance(run, "runs/seed1") == (
        "the finished run `runs/seed1` of `python -m supersub_tf run --set name=seed1 --set "
        "seed=1 --set train.verbose=2 --set 'deltas.bits=[float, 4]'` (the built-in default "
        "config with the differences of its `config.yaml`), finished 2026-12-06 22:08 UTC after "
        "30 min 27 s of wall time")


def test_rendered_header(render) -> None:
    smoke = render.header("01_x.ipynb", {"SMOKE": True}, None,
                          "python docs/render_tutorials.py --smoke")
    lines = smoke.splitlines()
    assert lines[0] == ("<!-- Written by `python docs/render_tutorials.py --smoke`; edit "
                        "notebooks/01_x.ipynb, not this file. -->")
    assert re.fullmatch(r"> \*\*Rendered with its outputs:\*\* \[`notebooks/01_x.ipynb`\]"
                        r"\(\.\./\.\./notebooks/01_x.ipynb\), executed \d{4}-\d\d-\d\d with "
                        r"`SMOKE = True`\. Smoke mode: tiny networks whose numbers only show "
                        r"that every step runs\.", lines[2]), lines[2]
    assert lines[4] == "> Regenerate with `python docs/render_tutorials.py --smoke`."


def test_shrink_png_keeps_small_figures_and_shrinks_big_ones(render) -> None:
    import io

    import numpy as np
    from PIL import Image

    def png(array) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return buffer.getvalue()

    small = png(np.full((40, 60, 3), 200, np.uint8))
    assert render.shrink_png(small) is small
    noise = png(np.random.default_rng(0).integers(0, 255, (600, 600, 3), dtype=np.uint8))
    assert len(noise) > 1_000_000
    shrunk = render.shrink_png(noise)
    assert len(shrunk) <= render.MAX_IMAGE_BYTES == 300_000
    image = Image.open(io.BytesIO(shrunk))
    assert image.format == "PNG" and 200 <= image.width < 600 and image.width == image.height


def test_to_markdown_keeps_what_the_tutorial_shows(render) -> None:
    """Printed text, Markdown tables and figures stay; stderr and TensorFlow's log lines go;
    figures are written beside the Markdown, named after the notebook."""
    import base64

    from nbformat.v4 import new_code_cell, new_notebook, new_output

    png = base64.b64encode(_tiny_png()).decode()
    nb = new_notebook(cells=[new_code_cell("run()", outputs=[
        new_output("stream", name="stderr", text="W0000 native warning\n"),
        new_output("stream", name="stdout",
                   text="INFO:tensorflow:Assets written to: /tmp/x/assets\ntop-1 0.410\n"),
        new_output("stream", name="stdout", text="INFO:tensorflow:Assets written to: /tmp/y\n"),
        new_output("display_data", data={"text/markdown": "| a | b |\n|---|---:|\n| x | 1 |",
                                         "text/plain": "<IPython.core.display.Markdown>"}),
        new_output("display_data", data={"image/png": png, "text/plain": "<Image>"})])])
    body, images = render.to_markdown(nb, "07_demo")
    assert list(images) == ["07_demo_files/07_demo_0_2.png"]
    assert images["07_demo_files/07_demo_0_2.png"] == base64.b64decode(png)
    assert "![png](07_demo_files/07_demo_0_2.png)" in body
    assert "| a | b |\n|---|---:|\n| x | 1 |" in body
    assert "    top-1 0.410" in body
    assert "tensorflow" not in body and "native warning" not in body
    assert nb.cells[0].outputs[0]["name"] == "stderr"  # the caller's notebook is untouched


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_committed_renders_are_small_and_complete() -> None:
    """docs/tutorials holds one rendered copy per notebook, every figure it links exists
    and is under 300 kB, and each copy names the run it shows."""
    folder = REPO_ROOT / "docs" / "tutorials"
    for path in NOTEBOOKS:
        text = (folder / f"{path.stem}.md").read_text()
        assert text.startswith("<!-- Written by `python docs/render_tutorials.py"), path.name
        assert "nothing was trained or written there" in text.split("\n\n", 3)[1], path.name
        for link in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text):
            assert (folder / link).stat().st_size < 300_000, link
    for png in folder.glob("*_files/*.png"):
        assert png.stat().st_size < 300_000, png


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


# ------------------------------------------------------------------------ a finished run
def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def _outputs(nb) -> str:
    """Every text a notebook's cells printed or displayed (tables as Markdown)."""
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                texts.append(out["text"])
            for kind in ("text/markdown", "text/plain"):
                if kind in out.get("data", {}):
                    texts.append(out["data"][kind])
    return "\n".join(texts)


def _no_errors(nb, name: str) -> None:
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"


READS_A_RUN = [p for p in NOTEBOOKS if p.name[:2] in ("01", "03", "04")]


@pytest.mark.parametrize("path", READS_A_RUN, ids=_ids(READS_A_RUN))
@pytest.mark.slow
def test_notebook_reads_a_finished_run(path: Path, tiny_supersub_run, kernel_env: Path) -> None:
    """With ``RUN_DIR`` a notebook reads the run (its config, networks, systems and
    records) and trains no stage: the run's folder is left exactly as it was. (02 is
    executed this way by the render test below.)"""
    if path.name.startswith("01_"):
        _data_dir_or_skip()  # its WordNet steps read ImageNet's metadata
    _, run_dir = tiny_supersub_run
    before = _snapshot(run_dir)
    start = time.perf_counter()
    result = _execute(path, kernel_env / path.name, parameters={"RUN_DIR": str(run_dir)})
    elapsed = time.perf_counter() - start
    _no_errors(result, path.name)
    assert _snapshot(run_dir) == before, f"{path.name} wrote into {run_dir}"
    text = _outputs(result)
    if path.name.startswith("01_"):
        assert f"the counts {run_dir} recorded: the same" in text
        assert "disc images of 2 subclasses" in text
    elif path.name.startswith("03_"):
        hard = json.loads((run_dir / "supersub" / "4bit.json").read_text())["routing"]["hard"]
        assert f"| Super-Sub, 4bit deltas | {hard['top1']:.3f} |" in text
        assert "stored base network equals the trained vanilla network: True" in text
    else:
        assert f"{run_dir / 'systems' / 'float'}: 2 specialists" in text
        assert "supersub_tf imported: False" in text
    print(f"{path.name}: RUN_DIR run {elapsed:.1f} s")


@pytest.mark.slow
def test_render_reads_a_finished_run_and_a_scaling_record(render, tiny_supersub_run,
                                                          kernel_env: Path) -> None:
    """The render command executes notebook 02 on a finished run and 05 on a scaling study
    folder, and writes each as Markdown with the run's provenance, its tables and its
    figures. (Rendering with ``--smoke`` only passes ``SMOKE = True`` instead: the smoke
    executions above cover those runs of the notebooks.)"""
    _, run_dir = tiny_supersub_run
    from supersub_tf.config import save_config
    from supersub_tf.studies.scaling import load_scaling_config

    study = kernel_env / "scaling"  # a finished study's folder: its record and settings
    study.mkdir()
    shutil.copy(SCALING_RECORD, study / "scaling.json")
    save_config(load_scaling_config("scaling", ["base.train.epochs=2"]),
                study / "scaling_config.yaml")
    before = _snapshot(run_dir), _snapshot(study)
    out = kernel_env / "tutorials"
    names = [p.name for p in NOTEBOOKS if p.name[:2] in ("02", "05")]
    start = time.perf_counter()
    assert render.main(["--run", str(run_dir), "--scaling", str(study), "--only", "02,05",
                        "--out", str(out)]) == 0
    elapsed = time.perf_counter() - start
    assert (_snapshot(run_dir), _snapshot(study)) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{Path(n).stem}{suffix}" for n in names for suffix in (".md", "_files")] + ["README.md"])
    written = [out / f"{Path(n).stem}.md" for n in names]

    vanilla = json.loads((run_dir / "vanilla" / "metrics.json").read_text())
    text = written[0].read_text()
    command = f"python docs/render_tutorials.py --run {run_dir} --scaling {study}"
    assert text.startswith(f"<!-- Written by `{command}`; edit notebooks/{names[0]}")
    assert f"It read the finished run `{run_dir}` of `python -m supersub_tf run --set " in text
    assert f"Regenerate with `{command}`." in text
    assert f"top-1 {vanilla['top1']:.3f} on" in text  # its analysis, read from the run
    assert "| within the true superclass |" in text  # a table, as Markdown
    assert "trained no specialists" in text  # the tiny run has none
    assert "| generalist |" in text  # it has a generalist
    figures = re.findall(r"!\[png\]\(([^)]+)\)", text)
    assert len(figures) >= 3, figures
    for figure in figures:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / figure).stat().st_size < render.MAX_IMAGE_BYTES

    text = written[1].read_text()
    assert (f"It read the scaling study `{study}` of `python -m supersub_tf scale --set "
            "base.train.epochs=2`, written ") in text
    record = json.loads(SCALING_RECORD.read_text())
    for point in record["points"]:
        if point["kind"] == "vanilla":
            assert f"| {point['point']} | {point['parameters']:,} |" in text
    assert len(re.findall(r"!\[png\]\(", text)) >= 5  # every cost figure and the budget's
    index = (out / "README.md").read_text()
    assert all(f"]({Path(n).stem}.md)" in index for n in names)
    print(f"render of 02 and 05: {elapsed:.1f} s")
