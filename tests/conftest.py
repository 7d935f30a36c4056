"""Shared fixtures: a private cache dir per test, the real shared data, and small
generated datasets in the official archive layouts."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import supersub_tf  # noqa: F401  (selects tf_keras before TensorFlow is imported)

# Five real Tiny ImageNet wnids in two superclasses of tiny_imagenet_10, plus one class
# (a school bus) outside every superclass, which sources must ignore.
TINY_CLASSES = {"n02085620": "dog", "n02099601": "dog", "n01644900": "reptile_amphibian",
                "n01641577": "reptile_amphibian", "n01443537": None, "n04146614": None}


#: Tests outside "slow" by nature (no network trained to a result, no main job) that
#: each take over 2.3 s on the 2-core machine (idle, `pytest --durations=0`,
#: 2026-12-07): marked slow here so that the fast tier (`-m "not slow"`) stays within its
#: 3 minutes. They still run in the whole suite.
HEAVY_FAST_TESTS = {
    "test_scaling.py::test_report_from_hand_made_points",
    "test_config_cli.py::test_cli_summary_real_data",
    "test_supersub_pipeline.py::test_untrained_vanilla_base_specialists_are_the_vanilla_network_renormalised",
    "test_tiny_imagenet.py::test_real_subset_summary",
    "test_synthetic.py::test_a_tiny_cnn_learns_shapes_and_hues",
    "test_training.py::test_evaluating_many_networks_in_turn_logs_no_retracing_warning",
    "test_models.py::test_builds_flat_with_features_and_logits[resnet110]",
    "test_models.py::test_builds_flat_with_features_and_logits[keras_resnet50]",
    "test_models.py::test_builds_flat_with_features_and_logits[resnet34]",
    "test_models.py::test_builds_flat_with_features_and_logits[efficientnetb0]",
    "test_models.py::test_trains_one_step[keras_resnet50]",
    "test_models.py::test_imagenet_models_match_torchvision_parameter_counts[resnet34]",
    "test_deltas.py::test_low_bit_deltas_take_few_values_per_channel[2-3]",
    "test_deltas.py::test_low_bit_deltas_take_few_values_per_channel[4-15]",
    "test_deltas.py::test_qat_specialist_trains_under_mixed_precision",
    "test_pretrained.py::test_mobilenet_loads_a_notop_weights_file",
    "test_pretrained.py::test_imagenet_head_rows_start_the_logits",
    "test_pretrained.py::test_imagenet_weights_are_copied_from_keras_reference",
}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if item.nodeid.split("/")[-1] in HEAVY_FAST_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own SUPERSUB_CACHE_DIR, so cached decode checks never leak."""
    monkeypatch.setenv("SUPERSUB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$SUPERSUB_DATA_DIR`` with the real data; fails under CI when it is missing."""
    root = os.environ.get("SUPERSUB_DATA_DIR")
    if root and (Path(root) / "tiny-imagenet-67.zip").is_file():
        return Path(root)
    message = "SUPERSUB_DATA_DIR with tiny-imagenet-67.zip and imagenet-meta/ is required"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def tiny_supersub_run(tmp_path_factory) -> tuple[Path, Path]:
    """``(root, run_dir)`` of the main job on the tiny synthetic hierarchy of
    ``test_training``: vanilla network, generalist and Super-Sub at float and 4-bit deltas,
    one epoch, exported under ``root/saved_models``. Built once for the tests that only
    read a finished run."""
    from test_training import tiny_config

    from supersub_tf.run import run_pipeline

    root = tmp_path_factory.mktemp("tiny_supersub")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SUPERSUB_CACHE_DIR", str(root / "cache"))
        config = tiny_config(root, epochs=1)
        config.deltas.bits = [None, 4]
        config.networks = ["vanilla", "generalist", "supersub"]
        return root, run_pipeline(config, log=lambda *_: None)


def jpeg_bytes(seed: int, size: int = 16, grey: bool = False) -> bytes:
    """A small random JPEG (greyscale when ``grey``)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (size, size) if grey else (size, size, 3)
    image = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    return buf.getvalue()


def write_tiny_imagenet(path: Path, per_class: int = 6, val_per_class: int = 2,
                        corrupt: str | None = None, as_zip: bool = True,
                        drop: str | None = None) -> Path:
    """Writes a Tiny ImageNet archive (zip or folder) in the official layout.

    Args:
        path: The zip file or folder to create.
        per_class: Training images per class; the first of each class is greyscale.
        val_per_class: Validation images per class.
        corrupt: Member path (relative to tiny-imagenet-200/) to fill with garbage.
        as_zip: Write a zip (else an extracted folder).
        drop: Member path (relative to tiny-imagenet-200/) to leave out, as a partial
            extraction would.
    """
    files: dict[str, bytes] = {"wnids.txt": "".join(f"{w}\n" for w in TINY_CLASSES).encode()}
    annotations, k = [], 0
    for c, wnid in enumerate(TINY_CLASSES):
        for i in range(per_class):
            files[f"train/{wnid}/images/{wnid}_{i}.JPEG"] = jpeg_bytes(100 * c + i, grey=i == 0)
        files[f"train/{wnid}/{wnid}_boxes.txt"] = b""
        for _ in range(val_per_class):
            files[f"val/images/val_{k}.JPEG"] = jpeg_bytes(10_000 + k)
            annotations.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t15\t15\n")
            k += 1
    files["val/val_annotations.txt"] = "".join(annotations).encode()
    if corrupt:
        files[corrupt] = b"\xff\xd8 this is not a JPEG"
    if drop:
        del files[drop]
    if as_zip:
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():
                zf.writestr(f"tiny-imagenet-200/{name}", data)
    else:
        for name, data in files.items():
            target = path / "tiny-imagenet-200" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return path
