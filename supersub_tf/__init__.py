"""supersub_tf: Superclassing ImageNet and the Super-Sub framework in TensorFlow.

The public API is this package's top level (README, "Public API")::

    import supersub_tf as sst

    config = sst.load_config(None, ["train.model=resnet8"])
    data = sst.load_dataset(config.data, "train", batch_size=128)
    model = sst.create_model("resnet20", num_classes=10)
    run_dir = sst.run_pipeline(config)               # the main job
    system = sst.load_system(run_dir / "systems" / "4bit")
    sst.export_savedmodel(system, "exported/")

Each name is imported from its module on first use (PEP 562), so ``import supersub_tf``
stays light and loads no TensorFlow; ``dir(supersub_tf)`` and ``__all__`` list them all.

Importing the package selects tf_keras (Keras 2) as TensorFlow's Keras before TensorFlow
is imported, because tensorflow-model-optimization's quantization-aware training does not
support Keras 3. TensorFlow itself is imported lazily by the modules that need it.

oneDNN's CPU kernels stay **off** unless you set ``TF_ENABLE_ONEDNN_OPTS=1`` yourself.
They train about twice as fast on 2-core AMD EPYC machines, but TensorFlow 2.21's oneDNN
path corrupts the heap on ordinary inputs (narrow convolutions at 48-64 px, batches of
37, 39, 41 or 103 images at 32 px: SIGSEGV or "double free or corruption", no Python
traceback; upstream tensorflow/tensorflow#117700 and #123109, fix not merged in 2.21).
A speed-up that can kill a run without a message is not a default; TensorFlow itself
turns oneDNN on for some Intel CPUs, so the project sets it off explicitly.

TensorFlow's C++ log stops at warnings (``TF_CPP_MIN_LOG_LEVEL=2``), and on a machine
without an NVIDIA driver at errors too (``3``): there its only error line is the CUDA
probe's "failed call to cuInit", printed by every process that looks for devices, and
every real failure still raises a Python exception. Set the variable yourself to see
more.
"""

import os as _os

_NO_NVIDIA_DRIVER = not _os.path.exists("/proc/driver/nvidia/version")

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # opt-in only: see above
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if _NO_NVIDIA_DRIVER else "2")

import importlib as _importlib  # noqa: E402

from supersub_tf.errors import (ConfigError, DataError, ExportError, HierarchyError,  # noqa: E402
                                OutputError, StorageError, SuperSubError)
from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass  # noqa: E402

__version__ = "0.1.0"

#: Public name -> the module that defines it, imported on first access. The first
#: groups are the main API (README, "Public API"); the rest are the building blocks
#: the tutorial notebooks take apart, public so that they import from here only.
_LAZY = {
    # Settings.
    **dict.fromkeys(("load_config", "RunConfig", "DataConfig", "config_to_dict", "bits_tag"),
                    "supersub_tf.config"),
    # Data and hierarchies.
    **dict.fromkeys(("create_source", "load_dataset", "load_hierarchy", "build_spec",
                     "spec_class_ids"), "supersub_tf.data"),
    **dict.fromkeys(("load_preset", "list_presets", "build_preset", "load_spec"),
                    "supersub_tf.presets"),
    **dict.fromkeys(("SuperclassingSpec", "build_hierarchy"), "supersub_tf.superclassing"),
    **dict.fromkeys(("WordNet", "WORDNET_DB_DIR"), "supersub_tf.wordnet"),
    "data_dir": "supersub_tf.paths",
    # Backbones.
    **dict.fromkeys(("create_model", "list_models", "trunk", "with_head"), "supersub_tf.models"),
    # The main job and its stages.
    **dict.fromkeys(("run_pipeline", "run_dir_of", "data_stage", "train_stage", "supersub_stage",
                     "analyze_run", "finished_networks"), "supersub_tf.run.pipeline"),
    # Systems, inference and export.
    "load_system": "supersub_tf.deltas.storage",
    "SuperSubPipeline": "supersub_tf.supersub.pipeline",
    **dict.fromkeys(("open_model", "predict_files"), "supersub_tf.predict"),
    "export_savedmodel": "supersub_tf.export.savedmodel",
    "export_tflite": "supersub_tf.export.tflite",
    # Building blocks: data inspection.
    "denormalize": "supersub_tf.data.pipeline",
    **dict.fromkeys(("image_grid", "write_preview"), "supersub_tf.data.preview"),
    **dict.fromkeys(("split_counts", "format_table"), "supersub_tf.data.summary"),
    **dict.fromkeys(("calibration_images", "evaluation_images"), "supersub_tf.data.arrays"),
    # Building blocks: training and its records.
    **dict.fromkeys(("network_dir", "load_network"), "supersub_tf.training.networks"),
    **dict.fromkeys(("compile_model", "steps_for", "with_targets"),
                    "supersub_tf.training.engine"),
    "HISTORY": "supersub_tf.training.history",
    **dict.fromkeys(("PREDICTIONS", "load_predictions"), "supersub_tf.training.predictions"),
    # Building blocks: analysis and reports.
    **dict.fromkeys(("plot_training_curves", "per_superclass_accuracy"), "supersub_tf.analysis"),
    "analyze_networks": "supersub_tf.analysis.run_analysis",
    **dict.fromkeys(("NETWORK_HEADER", "network_rows", "supersub_section"),
                    "supersub_tf.analysis.report"),
    "model_macs": "supersub_tf.analysis.costs",
    "markdown_table": "supersub_tf.tables",
    # Building blocks: delta specialists and their storage.
    **dict.fromkeys(("build_delta_specialist", "delta_layer_names", "extract_delta_set",
                     "head_rows", "iter_delta_layers", "materialize"),
                    "supersub_tf.deltas.specialist"),
    **dict.fromkeys(("storage_report", "format_storage_report"),
                    "supersub_tf.deltas.storage_report"),
    "MANIFEST": "supersub_tf.manifest_files",
    # Building blocks: the exports, measured.
    "METADATA_FILE": "supersub_tf.export.savedmodel",
    **dict.fromkeys(("export_size_report", "format_export_size_report", "format_measurement",
                     "keras_predict", "measure_export", "savedmodel_predict"),
                    "supersub_tf.export.measure"),
    # Building blocks: the studies.
    **dict.fromkeys(("DEFAULT_SCALING_CONFIG", "SCALING_QUICK_PROFILE", "is_supersub_size",
                     "load_scaling_config", "point_name"), "supersub_tf.studies.scaling_config"),
    "run_scaling": "supersub_tf.studies.scaling",
    **dict.fromkeys(("load_budget_config", "run_budget"), "supersub_tf.studies.budget"),
    **dict.fromkeys(("COSTS", "equal_cost_rows", "points_table", "write_scaling_figures"),
                    "supersub_tf.analysis.scaling_plots"),
}

__all__ = sorted(["ConfigError", "DataError", "ExportError", "Hierarchy", "HierarchyError",
                  "OutputError", "StorageError", "Subclass", "SuperSubError", "Superclass",
                  "__version__", *_LAZY])


def __getattr__(name: str):
    """Imports a public name's module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'supersub_tf' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups find it without this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
