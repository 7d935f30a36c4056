"""Command line: ``python -m supersub_tf <command>``.

Commands:
    run                      the main job (see :mod:`supersub_tf.run`)
    train KIND               train vanilla | generalist | specialists into runs/<name>
    analyze RUN_DIR          misclassification analysis and report of a run's networks
    storage SYSTEM_DIR       bytes per part of a saved Super-Sub system (a*N + 1 vs N + 1)
    predict MODEL INPUT...   classify image files with a system, SavedModel or LiteRT export
    export savedmodel SYSTEM OUT   the system as one SavedModel (both stages in the graph)
    export tflite SYSTEM OUT       LiteRT int8 models, manifest and a numpy-only runtime
    scale                    the scaling study: bigger vanilla networks vs Super-Sub
    budget                   the budget study: Super-Sub minus vanilla as training grows
    data summary             images per superclass and split
    data preview             PNG grid of sample images per superclass
    data build-preset        regenerate a preset's JSON (or build one from a spec file)
    data presets             list the built-in presets

Settings come from a YAML config (``--config``), then ``--set section.key=value``
overrides; errors in input print one clear line, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from supersub_tf.choices import SAVEDMODEL_ROUTINGS
from supersub_tf.config import EXPORT_QUANTIZATIONS, QUICK_PROFILE, load_config
from supersub_tf.console import quiet_tensorflow_startup
from supersub_tf.data import build_spec, create_source, load_hierarchy
from supersub_tf.data.arrays import calibration_images, load_images
from supersub_tf.data.class_lists import read_class_ids
from supersub_tf.data.preview import preview_gaps, write_preview
from supersub_tf.data.summary import format_gaps, format_table, hierarchy_counts, split_counts
from supersub_tf.deltas.storage import FORMAT_VERSION, convert_system, load_system
from supersub_tf.deltas.storage_report import format_storage_report, storage_report
from supersub_tf.errors import ConfigError, DataError, SuperSubError
from supersub_tf.export.tflite import CALIBRATED, export_tflite
from supersub_tf.models import check_model_name
from supersub_tf.predict import run_predict
from supersub_tf.presets import PRESET_DIR, list_presets, load_preset
from supersub_tf.run import analyze_run, run_pipeline, train_stage
from supersub_tf.run.layout import RunLayout
from supersub_tf.studies.budget import BUDGET_QUICK_PROFILE, load_budget_config, run_budget
from supersub_tf.studies.scaling import SCALING_QUICK_PROFILE, load_scaling_config, run_scaling
from supersub_tf.supersub.routing import INFERENCE_ROUTINGS, MODES

# Function-level imports: export.measure and export.savedmodel import TensorFlow when
# they load, so every other command, ``--help`` and a bad command line answer without
# waiting for it, and main() quiets TensorFlow's native start-up lines (console.py)
# before it first loads (a test checks that importing this module leaves TensorFlow
# unloaded).

DEFAULT_CONFIG = "default"  # the built-in config (package data), whatever the directory


RETRAIN_HELP = ("train again the finished stages whose recorded settings differ from the "
                "config's (without it such a run folder is refused, naming the settings)")


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config",
                        help="a YAML file, or a built-in config's name: default, imagenet_gpu, "
                             "cifar100, ... (default: default)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a setting, e.g. data.image_size=64")


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    _add_config_args(parser)
    parser.add_argument("--dataset", help="tiny_imagenet, imagenet, folder, synthetic or "
                                          "tfds:<builder> (data.dataset)")
    parser.add_argument("--preset", help="preset name, hierarchy JSON or spec YAML (data.preset)")
    parser.add_argument("--path", help="dataset root or archive (data.path)")
    parser.add_argument("--image-size", type=int, help="image side in pixels (data.image_size)")


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    """The flags of a command that trains into a run folder (``run``, ``train``)."""
    _add_data_args(parser)
    parser.add_argument("--name", help="run name (directory under output_dir)")
    parser.add_argument("--quick", action="store_true", help="smoke-test profile (minutes)")
    parser.add_argument("--retrain", action="store_true", help=RETRAIN_HELP)


def _load_config(args: argparse.Namespace):
    path = args.config or DEFAULT_CONFIG
    overrides = list(QUICK_PROFILE) if getattr(args, "quick", False) else []
    for flag, key in (("dataset", "data.dataset"), ("preset", "data.preset"),
                      ("path", "data.path"), ("image_size", "data.image_size"),
                      ("name", "name")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    config = load_config(path, overrides + args.overrides)
    check_model_name(config.train.model)  # before any work (the config cannot check it)
    return config


def _cmd_run(args: argparse.Namespace) -> None:
    run_pipeline(_load_config(args), retrain=args.retrain)


def _cmd_train(args: argparse.Namespace) -> None:
    train_stage(_load_config(args), args.kind, retrain=args.retrain)


def _cmd_analyze(args: argparse.Namespace) -> None:
    layout = RunLayout(args.run_dir)
    if not layout.config.is_file():
        raise ConfigError(f"{layout.root} is not a run directory (no {RunLayout.CONFIG})")
    analyze_run(load_config(layout.config), layout.root)


def _cmd_storage(args: argparse.Namespace) -> None:
    if args.convert:
        old = convert_system(args.system)
        print(f"[storage] {args.system}: format {old} -> {FORMAT_VERSION}"
              if old != FORMAT_VERSION else
              f"[storage] {args.system}: already format {FORMAT_VERSION}, left as it is")
    report = storage_report(args.system)
    print(json.dumps(report, indent=2) if args.json else format_storage_report(report))


def _cmd_predict(args: argparse.Namespace) -> int:
    return run_predict(args.model, args.inputs, routing=args.routing, k=args.k,
                       top_k=args.top_k, fmt=args.format, output=args.output, tau=args.tau)


def _system_config(args: argparse.Namespace):
    """The data settings for a system's export: ``--config``, else the config of the run
    the system was saved in (``<run>/systems/<bits>/``), else the defaults."""
    run_config = RunLayout(Path(args.system).resolve().parent.parent).config
    if args.config is None and run_config.is_file():
        return load_config(run_config, args.overrides)
    return _load_config(args)


def _cmd_export_savedmodel(args: argparse.Namespace) -> None:
    from supersub_tf.export.measure import export_size_report, format_export_size_report
    from supersub_tf.export.savedmodel import export_savedmodel

    deltas = _system_config(args).deltas  # the run's own k and tau, unless given
    path = export_savedmodel(args.system, args.output, routing=args.routing,
                             k=args.k or deltas.topk,
                             tau=deltas.gate_tau if args.tau is None else args.tau)
    print(format_export_size_report(export_size_report(path, args.system)))


def _cmd_export_tflite(args: argparse.Namespace) -> None:
    from supersub_tf.export.measure import export_sizes, format_measurement, measure_export

    system = load_system(args.system)
    config = source = None
    if args.quantization in CALIBRATED or args.compare:  # these read the dataset
        config = _system_config(args)
        if system.backbone.image_size != config.data.image_size:
            raise ConfigError(f"{args.system} takes {system.backbone.image_size}px images "
                              f"but the data config gives {config.data.image_size}px; pass the "
                              "run's --config or --set data.image_size=...")
        source = create_source(config.data)
    images = fine = None
    if args.quantization in CALIBRATED:
        images, fine = calibration_images(config.data, source=source,
                                          per_superclass=args.calibration_images,
                                          seed=config.seed)
    path = export_tflite(system, args.output, images, fine, quantization=args.quantization,
                         calibration_size=args.calibration_images,
                         seed=config.seed if config else 0)
    if args.compare:
        val, val_fine = load_images(config.data, "val", source=source)
        print(format_measurement(measure_export(path, system, val, val_fine)))
    else:
        sizes = export_sizes(path, system)
        print(f"wrote {path}: {len(sizes['models'])} models, {sizes['total_bytes']:,} bytes")


def _cmd_scale(args: argparse.Namespace) -> None:
    quick = list(SCALING_QUICK_PROFILE) if args.quick else []
    run_scaling(load_scaling_config(args.config, quick + args.overrides), retrain=args.retrain)


def _cmd_budget(args: argparse.Namespace) -> None:
    quick = list(BUDGET_QUICK_PROFILE) if args.quick else []
    run_budget(load_budget_config(args.config, quick + args.overrides), retrain=args.retrain)


def _cmd_summary(args: argparse.Namespace) -> None:
    config = _load_config(args)
    # An inspection never downloads; without the images, a preset still has its counts.
    config.data.download = False
    try:
        summary = split_counts(create_source(config.data))
    except DataError as err:
        if not args.preset:
            raise
        summary = hierarchy_counts(load_hierarchy(args.preset, config.data), str(err))
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{summary['dataset'] or 'no dataset'}, hierarchy {summary['hierarchy']}")
    print(format_table(summary))
    if gaps := format_gaps(summary):
        print(gaps)


def _preview_setting(args: argparse.Namespace, flag: str, key: str, config_value):
    """A ``data preview`` setting: its flag, else the config's ``preview.<key>`` (which
    ``--set preview.<key>=...`` sets); both given and different is refused, not settled
    silently."""
    value = getattr(args, flag.lstrip("-").replace("-", "_"))
    given = any(o.partition("=")[0].strip() == f"preview.{key}" for o in args.overrides)
    if value is not None and given and value != config_value:
        raise ConfigError(f"{flag} {value} and --set preview.{key}={config_value} disagree; "
                          "give one of them")
    return config_value if value is None else value


def _cmd_preview(args: argparse.Namespace) -> None:
    config = _load_config(args)
    split = _preview_setting(args, "--split", "split", config.preview.split)
    per_superclass = _preview_setting(args, "--per-superclass", "images_per_superclass",
                                      config.preview.images_per_superclass)
    source = create_source(config.data)
    out = write_preview(source, args.output, split, per_superclass)
    print(f"wrote {out}")
    if gaps := preview_gaps(source, split):
        print(gaps)


def _cmd_build_preset(args: argparse.Namespace) -> None:
    output = args.output
    if output is None and args.spec in list_presets():
        output = PRESET_DIR / f"{args.spec}.json"
    # --classes: the dataset's classes, which the spec is built over (those it holds).
    built = build_spec(args.spec, read_class_ids(args.classes) if args.classes else None,
                       wordnet_source=args.wordnet, wordnet_path=args.wordnet_path)
    path = Path(output) if output is not None else None
    if path is not None:
        built.hierarchy.save(path)
    hierarchy = built.hierarchy
    sizes = ", ".join(f"{name} {n}" for name, n in hierarchy.summary_rows())
    print(f"{hierarchy.name}: {hierarchy.num_superclasses} superclasses, "
          f"{hierarchy.num_classes} classes ({sizes})")
    # What it leaves out, never without a word: the dataset's classes in no superclass by
    # name (a built-in's are by design, README), the spec's classes it lacks counted.
    if left_out := built.left_out_note():
        print(left_out[0])
        if args.spec not in list_presets():
            print("".join(f"  {name}\n" for name in left_out[1]), end="")
    if absent := built.not_in_data_note():
        print(absent[0])
    print(f"wrote {path}" if path else hierarchy.to_json())


def _cmd_presets(args: argparse.Namespace) -> None:
    for name in list_presets():
        h = load_preset(name)
        print(f"{name:24s} {h.num_superclasses:3d} superclasses {h.num_classes:5d} classes")


# ------------------------------------------------------------------------------ parser
def _add_training_commands(commands: argparse._SubParsersAction) -> None:
    """``run``, ``train`` and ``analyze``: the main job and its stages."""
    run = commands.add_parser("run", help="the main job: the paper's pipeline into runs/<name>")
    _add_run_args(run)
    run.set_defaults(func=_cmd_run)

    train = commands.add_parser("train", help="train one kind of network into runs/<name>")
    train.add_argument("kind", choices=("vanilla", "generalist", "specialists"))
    _add_run_args(train)
    train.set_defaults(func=_cmd_train)

    analyze = commands.add_parser("analyze", help="analysis and report of a run directory")
    analyze.add_argument("run_dir", help="e.g. runs/default")
    analyze.set_defaults(func=_cmd_analyze)


def _add_storage_command(commands: argparse._SubParsersAction) -> None:
    storage = commands.add_parser("storage", help="bytes of a saved Super-Sub system: "
                                                  "a*N + 1 vs N + 1 networks")
    storage.add_argument("system", help="a system directory, e.g. runs/default/systems/8bit")
    storage.add_argument("--json", action="store_true", help="print JSON instead of a table")
    storage.add_argument("--convert", action="store_true",
                         help="first rewrite an older system (format 2, .npz specialists) in "
                              "the current format, in place and atomically")
    storage.set_defaults(func=_cmd_storage)


def _routing_help() -> str:
    """``--routing``'s help: every mode ``predict`` offers, from the routing registry."""
    modes = "; ".join(f"{name}: {MODES[name].summary}" for name in INFERENCE_ROUTINGS)
    return (f"how images reach specialists ({modes}; default: hard, and for a SavedModel "
            "the one routing it was exported with, export.savedmodel_routing)")


def _add_predict_command(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict", help="classify image files with a trained model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Classify image files with a stored system, an exported SavedModel or a "
                    "LiteRT export.",
        epilog="Preprocessing is the training pipeline's evaluation path: each file is "
               "decoded to RGB\n(training's decoder) with its EXIF orientation applied, resized to the "
               "model's square size with\nantialiased bilinear filtering (no crop, rounded to "
               "uint8), and normalised as in\ntraining. Files that cannot be decoded are "
               "named; the others still get predictions,\nand the exit status is then 1.\n\n"
               "examples:\n"
               "  python -m supersub_tf predict runs/default/systems/4bit photo.jpg\n"
               "  python -m supersub_tf predict saved_models/default pictures/ --format json\n"
               "  python -m supersub_tf predict saved_models/default_tflite 'shots/*.png' "
               "--top-k 3")
    predict.add_argument("model", help="a system directory (runs/<name>/systems/<bits>), a "
                                       "SavedModel folder or a LiteRT export folder")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="image files, folders (searched recursively) or glob patterns")
    predict.add_argument("--top-k", type=int, default=5,
                         help="most likely classes listed per image (default 5)")
    predict.add_argument("--routing", default=None, choices=INFERENCE_ROUTINGS,
                         help=_routing_help())
    predict.add_argument("--k", type=int, default=None,
                         help="superclasses per image for topk and gated routing (default 2; "
                              "a SavedModel's is the one it was exported with)")
    predict.add_argument("--tau", type=float, default=None,
                         help="gated routing's confidence threshold (default: the main job's "
                              "deltas.gate_tau default; a SavedModel's is the one it was "
                              "exported with)")
    predict.add_argument("--format", default="table", choices=("table", "json", "csv"))
    predict.add_argument("--output", help="write the predictions to this file (atomically) "
                                          "instead of printing them")
    predict.set_defaults(func=_cmd_predict)


def _add_export_commands(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="deploy a Super-Sub system").add_subparsers(
        dest="export_command", required=True)
    saved = export.add_parser("savedmodel", help="one SavedModel running both stages")
    saved.add_argument("system", help="a system directory, e.g. runs/default/systems/8bit")
    saved.add_argument("output", help="the SavedModel folder, e.g. saved_models/default")
    saved.add_argument("--routing", default="hard", choices=SAVEDMODEL_ROUTINGS,
                       help="the routing its graph implements (default hard); topk and "
                            "gated take the system's run's deltas.topk and deltas.gate_tau "
                            "unless --k / --tau say otherwise")
    saved.add_argument("--k", type=int, default=None, help="superclasses per image of "
                                                            "topk and gated routing")
    saved.add_argument("--tau", type=float, default=None,
                       help="gated routing's confidence threshold")
    _add_config_args(saved)
    saved.set_defaults(func=_cmd_export_savedmodel)
    lite = export.add_parser("tflite", help="LiteRT models, manifest and numpy-only runtime")
    lite.add_argument("system", help="a system directory, e.g. runs/default/systems/8bit")
    lite.add_argument("output", help="the export folder, e.g. saved_models/default_tflite")
    _add_config_args(lite)
    lite.add_argument("--quantization", default="int8", choices=EXPORT_QUANTIZATIONS,
                      help="int8: full integer, calibrated on training images (default)")
    lite.add_argument("--calibration-images", type=int, default=256,
                      help="training images per model for the calibration (default 256)")
    lite.add_argument("--compare", action="store_true",
                      help="check against the Keras pipeline on the validation split")
    lite.set_defaults(func=_cmd_export_tflite)


def _add_study_commands(commands: argparse._SubParsersAction) -> None:
    """``scale`` and ``budget``: studies of many runs, each with its own config."""
    for name, func, config_file, help_text, example in (
            ("scale", _cmd_scale, "scaling", "the scaling study: bigger vanilla "
             "networks against Super-Sub systems", "base.train.epochs=2"),
            ("budget", _cmd_budget, "budget", "the budget crossover study: "
             "Super-Sub against vanilla at growing training budgets", "epochs=[2,4]")):
        study = commands.add_parser(name, help=help_text)
        study.add_argument("--config", default=config_file,
                           help=f"the study's YAML file or built-in config name (default "
                                f"{config_file})")
        study.add_argument("--set", dest="overrides", action="append", default=[],
                           metavar="KEY=VALUE", help=f"override a setting, e.g. {example}")
        study.add_argument("--quick", action="store_true", help="smoke-test profile (minutes)")
        study.add_argument("--retrain", action="store_true", help=RETRAIN_HELP)
        study.set_defaults(func=func)


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    """``data summary | preview | build-preset | presets``: the dataset tools."""
    data = commands.add_parser("data", help="dataset tools").add_subparsers(dest="data_command",
                                                                           required=True)
    summary = data.add_parser("summary", help="images per superclass and split")
    _add_data_args(summary)
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    summary.set_defaults(func=_cmd_summary)

    preview = data.add_parser("preview", help="PNG grid of samples per superclass")
    _add_data_args(preview)
    preview.add_argument("--output", default="preview.png", help="PNG path (default preview.png)")
    preview.add_argument("--split", help="train, val or test (default: preview.split, train)")
    preview.add_argument("--per-superclass", type=int,
                         help="images per superclass (default: preview.images_per_superclass, 8)")
    preview.set_defaults(func=_cmd_preview)

    build = data.add_parser("build-preset", help="regenerate a preset JSON from its spec")
    build.add_argument("spec", help="built-in preset name or a spec .yaml/.json path")
    build.add_argument("--wordnet", choices=("auto", "imagenet", "wordnet3"), default="auto",
                       help="ImageNet's is-a metadata, WordNet 3.0's data.noun, or auto "
                            "(the metadata if present)")
    build.add_argument("--wordnet-path", help="folder of that source (default: "
                                              "$SUPERSUB_DATA_DIR/imagenet-meta or /usr/share/wordnet)")
    build.add_argument("--classes", help="the dataset's classes, which the spec is built over: "
                                         "a wnids text file, a Tiny ImageNet zip/folder, an "
                                         "ImageNet-layout folder (train/<wnid>/) or a folder "
                                         "of class folders")
    build.add_argument("--output", help="JSON path (default: the package preset for built-ins; "
                                        "print for spec files)")
    build.set_defaults(func=_cmd_build_preset)

    presets = data.add_parser("presets", help="list built-in presets")
    presets.set_defaults(func=_cmd_presets)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m supersub_tf``: one subcommand per command of the
    module docstring, added by group."""
    parser = argparse.ArgumentParser(prog="python -m supersub_tf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_training_commands(commands)
    _add_storage_command(commands)
    _add_predict_command(commands)
    _add_export_commands(commands)
    _add_study_commands(commands)
    _add_data_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on bad input, with a one-line message)."""
    args = build_parser().parse_args(argv)
    quiet = quiet_tensorflow_startup()  # TensorFlow's native start-up lines: console.py
    try:
        status = args.func(args)
    except SuperSubError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        quiet.uninstall()
    return int(status or 0)
