"""ARCHITECTURE.md against the code: its layer order, its module list, no import circle,
and the registries that must agree across layers. Cheap: the package is parsed with
``ast``, never imported (except the small registries)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "supersub_tf"
DOC = ROOT / "ARCHITECTURE.md"


def module_files() -> dict[str, Path]:
    """``supersub_tf.x.y`` -> its file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = module_files()


def _resolve(node: ast.ImportFrom | ast.Import, module: str) -> list[str]:
    """The package modules an import statement loads (a name that is a submodule counts
    as that module, any other name as the module it is read from)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from the importing module's package
            package = module.split(".")
            if MODULES[module].name != "__init__.py":
                package = package[:-1]
            package = package[:len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                 for alias in node.names]
    return [name for name in names if name == "supersub_tf" or name.startswith("supersub_tf.")]


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """``(module-level, function-level)`` package imports of ``module``; imports under
    ``if TYPE_CHECKING:`` are annotations only and not counted."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top: set[str] = set()
    lazy: set[str] = set()

    def visit(body: list[ast.stmt], in_function: bool) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                (lazy if in_function else top).update(_resolve(node, module))
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse, in_function)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, True)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    value = getattr(node, field, None)
                    if isinstance(value, list):
                        visit(value, in_function)

    visit(tree.body, False)
    return top - {module}, lazy - {module}


def floors() -> list[list[str]]:
    """The numbered floors of ARCHITECTURE.md's layering, lowest first, as names relative
    to the package (``supersub_tf`` itself for the root)."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("**Layering.**"):]
    found = []
    for line in section.splitlines()[1:]:
        match = re.match(r"(\d+)\. (.*)", line)
        if match:
            assert int(match.group(1)) == len(found) + 1, f"floors out of order: {line}"
            found.append(re.findall(r"`([\w.]+)`", match.group(2)))
        elif found and not line.strip():
            break
    return found


FLOORS = floors()


def floor_of(module: str) -> int:
    """The floor of the longest listed name that is ``module`` or a package above it
    (the root ``supersub_tf`` only names itself)."""
    best, floor = "", None
    for number, names in enumerate(FLOORS, 1):
        for name in names:
            full = name if name == "supersub_tf" else f"supersub_tf.{name}"
            covers = module == full or (name != "supersub_tf" and module.startswith(full + "."))
            if covers and len(full) > len(best):
                best, floor = full, number
    assert floor is not None, f"ARCHITECTURE.md's layering does not place {module}"
    return floor


def test_the_layering_lists_real_modules_and_places_every_one():
    assert len(FLOORS) >= 9, FLOORS
    listed = [name for names in FLOORS for name in names]
    assert len(listed) == len(set(listed)), "a name is on two floors"
    for name in listed:
        full = name if name == "supersub_tf" else f"supersub_tf.{name}"
        assert full in MODULES, f"ARCHITECTURE.md's layering names {name}, which is no module"
    for module in MODULES:
        floor_of(module)


def test_every_module_is_in_the_module_table():
    """Each module file is named on its package's row of "Every module" (a package's
    ``__init__.py`` is its row)."""
    text = DOC.read_text(encoding="utf-8")
    rows = {}
    for line in text.split("### Every module")[1].split("**Layering")[0].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[1]
    missing = []
    for path in MODULES.values():
        if path.name == "__init__.py":
            continue
        folder = path.parent.relative_to(PACKAGE).as_posix()
        row = rows.get("supersub_tf" if folder == "." else f"{folder}/", "")
        if f"`{path.name}`" not in row:
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"missing from ARCHITECTURE.md's module table: {missing}"


def test_no_module_imports_a_higher_floor():
    """Module-level and function-level imports alike: a deferred import is still a
    dependency. The package root as a target is exempt: Python runs it before any of
    its modules, so reading a name from it (``__version__``) adds no dependency."""
    wrong = []
    for module in MODULES:
        top, lazy = imports_of(module)
        for target in sorted(top | lazy):
            if target != "supersub_tf" and floor_of(target) > floor_of(module):
                wrong.append(f"{module} (floor {floor_of(module)}) imports {target} "
                             f"(floor {floor_of(target)})"
                             + (" in a function" if target not in top else ""))
    assert not wrong, "\n".join(wrong)


def test_module_level_imports_have_no_circle():
    graph = {module: imports_of(module)[0] for module in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in graph:
        if module not in index:
            connect(module)
    assert not circles, f"import circles: {circles}"


def test_the_checks_catch_a_violation(tmp_path, monkeypatch):
    """The checks are not vacuous: a lower module importing a higher one fails, and so
    does a circle."""
    fake = tmp_path / "errors.py"
    fake.write_text("from supersub_tf.export.savedmodel import export_savedmodel\n")
    monkeypatch.setitem(MODULES, "supersub_tf.errors", fake)
    with pytest.raises(AssertionError, match="supersub_tf.errors \\(floor 1\\) imports "
                                             "supersub_tf.export.savedmodel \\(floor 8\\)"):
        test_no_module_imports_a_higher_floor()
    fake.write_text("def f():\n    import supersub_tf.run\n")
    with pytest.raises(AssertionError, match="imports supersub_tf.run \\(floor 9\\) in a "
                                             "function"):
        test_no_module_imports_a_higher_floor()
    fake.write_text("from supersub_tf.atomic import atomic_write_text\n")  # atomic: errors
    with pytest.raises(AssertionError, match="import circles: \\[\\['supersub_tf.atomic', "
                                             "'supersub_tf.errors'\\]\\]"):
        test_module_level_imports_have_no_circle()


# ------------------------------------------------------------------- shared registries
def test_the_bottom_layer_names_agree_with_the_registries():
    """``choices`` holds the names the config validates; the modules above that own each
    concept must agree (routing.py cannot import choices: it is copied into exports)."""
    from supersub_tf import choices
    from supersub_tf.export import savedmodel
    from supersub_tf.supersub import routing

    assert choices.ROUTINGS == tuple(routing.MODES) == routing.ALL_ROUTINGS
    assert savedmodel.EXPORT_ROUTINGS == choices.SAVEDMODEL_ROUTINGS
    assert set(choices.SAVEDMODEL_ROUTINGS) <= set(routing.INFERENCE_ROUTINGS)
    assert routing.INFERENCE_ROUTINGS == ("hard", "topk", "soft", "gated")
    assert [m.name for m in routing.MODES.values() if not m.weighted] == ["oracle"]


def test_light_entry_points_leave_tensorflow_unloaded():
    """Importing the command line, ``predict`` and the LiteRT export code loads no
    TensorFlow: ``--help`` and a bad command line answer at once, and console.py can quiet
    TensorFlow's native start-up lines before it loads."""
    code = ("import sys\n"
            "import supersub_tf.cli, supersub_tf.predict, supersub_tf.export.tflite\n"
            "import supersub_tf.analysis, supersub_tf.studies.scaling_records\n"
            "print(sorted(m for m in ('tensorflow', 'tf_keras') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
