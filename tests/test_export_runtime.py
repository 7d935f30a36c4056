"""The LiteRT runtime's ExportError: the package's own class inside the package, and a
ValueError of the same name only where the runtime runs standalone (an export folder).

Fast: no model is converted or run; the runtime's checks of a manifest raise first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from supersub_tf import errors
from supersub_tf.export import litert_runtime, tflite


def test_inside_the_package_the_runtime_raises_the_packages_export_error(tmp_path):
    assert litert_runtime.ExportError is errors.ExportError
    assert issubclass(litert_runtime.ExportError, errors.SuperSubError)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "supersub-litert",
                                                         "format_version": 99}))
    with pytest.raises(errors.ExportError, match="unknown format version 99"):
        litert_runtime.read_manifest(tmp_path)
    with pytest.raises(errors.ExportError, match="manifest.json"):  # no re-raise needed
        tflite.open_export(tmp_path / "absent")


STANDALONE = r"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("supersub_tf", "tensorflow", "tf_keras"):
            raise ImportError(f"blocked import of {name}")
sys.meta_path.insert(0, Block())
sys.path.insert(0, ".")
import litert_runtime
try:
    litert_runtime.read_manifest("absent")
except ValueError as err:  # what a caller without the package catches
    caught = type(err)
print(json.dumps({"class": caught.__qualname__, "module": caught.__module__,
                  "same": caught is litert_runtime.ExportError,
                  "value_error": issubclass(caught, ValueError),
                  "routing": litert_runtime.routing.__name__}))
"""


def test_standalone_the_runtime_defines_a_compatible_export_error(tmp_path):
    """An export folder's copies (litert_runtime.py and the modules it lists) run without
    the package, raising their own ExportError, a ValueError as the package's is."""
    shutil.copyfile(litert_runtime.__file__, tmp_path / tflite.RUNTIME_FILE)
    for name, module in litert_runtime.MODULE_COPIES.items():
        shutil.copyfile(module.__file__, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", STANDALONE], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"class": "ExportError", "module": "litert_runtime", "same": True,
                   "value_error": True, "routing": "supersub_routing"}
    assert issubclass(errors.ExportError, ValueError)  # one except clause catches both
    assert Path(tmp_path / "supersub_routing.py").read_bytes() == Path(
        sys.modules["supersub_tf.supersub.routing"].__file__).read_bytes()


BY_PATH = r"""
import importlib.util, json, sys
from pathlib import Path
folder = Path(sys.argv[1])
spec = importlib.util.spec_from_file_location("litert_runtime", folder / "litert_runtime.py")
runtime = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runtime)
print(json.dumps({"routing": runtime.routing.__name__,
                  "manifest_files": runtime.manifest_files.__name__}))
"""


def test_an_export_folders_runtime_loads_by_path_from_elsewhere(tmp_path):
    """As notebook 04 and a serving script load it: by file path, from another working
    folder, so the copies beside it are not on ``sys.path`` until the runtime puts them."""
    export = tmp_path / "export"
    export.mkdir()
    shutil.copyfile(litert_runtime.__file__, export / tflite.RUNTIME_FILE)
    for name, module in litert_runtime.MODULE_COPIES.items():
        shutil.copyfile(module.__file__, export / name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", BY_PATH, str(export)], cwd=elsewhere,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "routing": "supersub_routing", "manifest_files": "supersub_manifest_files"}
