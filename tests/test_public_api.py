"""The public API: the names ``supersub_tf`` exports at its top level, loaded lazily, and
the notebooks that use only them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import supersub_tf

PACKAGE = Path(supersub_tf.__file__).parent
NOTEBOOKS = sorted((PACKAGE.parent / "notebooks").glob("*.ipynb"))

#: The main API of the README's "Public API" section: reaching these must not load
#: TensorFlow, so a script that only reads settings, data or presets stays quick.
LIGHT = ["load_config", "DataConfig", "create_source", "load_dataset", "load_hierarchy",
         "load_preset", "list_presets", "create_model", "list_models"]


def _module_file(module: str) -> Path:
    base = PACKAGE.parent.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _top_level_names(path: Path) -> set[str]:
    """Names a module defines or imports at its top level."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_every_public_name_has_a_home():
    """Each lazy name is defined (or imported) at the top level of the module it maps
    to, read without importing anything, and names no submodule (which it would hide)."""
    missing = [f"{name} ({module})" for name, module in supersub_tf._LAZY.items()
               if name not in _top_level_names(_module_file(module))]
    assert not missing
    submodules = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert not set(supersub_tf.__all__) & submodules


def test_dir_and_all_list_the_public_names():
    names = set(supersub_tf.__all__)
    assert {"load_config", "create_source", "load_dataset", "create_model", "run_pipeline",
            "load_system", "SuperSubPipeline", "open_model", "predict_files",
            "export_savedmodel", "export_tflite", "Hierarchy", "SuperSubError"} <= names
    assert names <= set(dir(supersub_tf))
    assert supersub_tf.__all__ == sorted(names)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        supersub_tf.no_such_name  # noqa: B018


def test_importing_the_package_loads_no_tensorflow():
    """``import supersub_tf`` sets TensorFlow's environment first and imports nothing
    heavy; the light half of the main API resolves without TensorFlow too."""
    script = (
        "import os, sys\n"
        "import supersub_tf\n"
        "assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules\n"
        "print(os.environ['TF_USE_LEGACY_KERAS'], os.environ['TF_ENABLE_ONEDNN_OPTS'])\n"
        f"for name in {LIGHT!r}:\n"
        "    getattr(supersub_tf, name)\n"
        "print('tensorflow' in sys.modules)\n")
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("TF_USE_LEGACY_KERAS", "TF_ENABLE_ONEDNN_OPTS")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout.split()
    assert out == ["1", "0", "False"]


@pytest.mark.slow
def test_every_public_name_resolves():
    """Every name imports from its module and is what that module defines."""
    import importlib

    for name, module in supersub_tf._LAZY.items():
        assert getattr(supersub_tf, name) is getattr(importlib.import_module(module), name)


def _code_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    # IPython magics and shell lines (%pip, !apt-get) are not Python.
    return ["\n".join("" if line.lstrip().startswith(("%", "!")) else line
                      for line in "".join(c["source"]).splitlines())
            for c in cells if c["cell_type"] == "code"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_import_only_the_public_api(notebook):
    """Each notebook takes the package's names from its top level only: no
    ``from supersub_tf.x import``, no ``supersub_tf.x.y`` (other libraries as they come)."""
    public, found, bad = set(supersub_tf.__all__), set(), []
    for source in _code_cells(notebook):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("supersub_tf"):
                names = [a.name for a in node.names]
                found |= set(names)
                if node.module != "supersub_tf" or not set(names) <= public:
                    bad.append(f"from {node.module} import {', '.join(names)}")
            elif isinstance(node, ast.Import):
                bad += [f"import {a.name}" for a in node.names
                        if a.name.startswith("supersub_tf.")]
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id == "supersub_tf" and node.attr not in public):
                bad.append(f"supersub_tf.{node.attr}")
    assert not bad
    assert found  # each notebook uses the package
