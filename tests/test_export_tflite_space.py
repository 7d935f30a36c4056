"""LiteRT export on a full disk: refused before converting, or stopped at the first write.

Fast (no conversion runs): the system is a stand-in with a parameter count, which is all
the free-space estimate reads before the first conversion.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from supersub_tf.deltas.backbone import Backbone
from supersub_tf.errors import OutputError
from supersub_tf.export import litert_runtime, tflite
from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass

PARAMETERS = 1_000_000


def stand_in_system() -> SimpleNamespace:
    """What export_tflite reads before its first conversion: two superclasses, a trunk of
    a million parameters."""
    hierarchy = Hierarchy([Superclass(name, (Subclass(f"{name}1", "a"), Subclass(f"{name}2", "b")))
                           for name in ("x", "y")], name="t")
    return SimpleNamespace(hierarchy=hierarchy, delta_sets={}, path=None, delta_settings={},
                           backbone=Backbone(model="resnet8", width=1.0, image_size=16),
                           generalist=SimpleNamespace(count_params=lambda: PARAMETERS),
                           stage_one_head="fine")


def test_estimate_counts_every_model_and_the_runtime():
    copies = sum(Path(m.__file__).stat().st_size
                 for m in (litert_runtime, *litert_runtime.MODULE_COPIES.values()))
    per_model = {"float32": 4 * 1.25 * PARAMETERS + 65536, "int8": 1.25 * PARAMETERS + 65536}
    for mode, size in per_model.items():
        assert tflite.estimated_export_bytes(stand_in_system(), mode) == 3 * size + copies


def test_a_full_disk_is_refused_before_any_conversion(tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("converted before the free space was checked")

    monkeypatch.setattr(tflite, "convert_model", never)
    monkeypatch.setattr(tflite.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 10**6, 10**6))
    needed = tflite.estimated_export_bytes(stand_in_system(), "float32")
    out = tmp_path / "models" / "export_tflite"
    with pytest.raises(OutputError, match=rf"^{out}: cannot write it \(the export needs about "
                                          rf"{needed / 1e6:.1f} MB, 1.0 MB are free on "
                                          rf"{tmp_path}'s filesystem\)$"):
        tflite.export_tflite(stand_in_system(), out, quantization="float32")
    assert not list(tmp_path.iterdir())


def test_a_write_that_fails_stops_the_export_at_once(tmp_path, monkeypatch):
    """Enough space by the estimate, but the first model's write fails (ENOSPC): one
    OutputError line, no further conversion, nothing left behind."""
    conversions = []

    def convert(model, quantization, representative):
        conversions.append(model)
        return b"flatbuffer"

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(tflite, "convert_model", convert)
    monkeypatch.setattr(tflite.Path, "write_bytes", full)
    out = tmp_path / "export_tflite"
    with pytest.raises(OutputError, match=rf"^{out}: cannot write it \(No space left on device\)$"):
        tflite.export_tflite(stand_in_system(), out, quantization="float32")
    assert len(conversions) == 1
    assert not list(tmp_path.iterdir())
