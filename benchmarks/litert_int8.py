"""Issue 12's int8 LiteRT question: where does its disagreement with Keras come from, and
is int8 faster than float32 here?

The main job's LiteRT export is full-integer (int8 weights per output channel, int8
activations calibrated on training images). This script exports the default run's
system several ways and measures each against the Keras pipeline on the whole
validation split, side by side in one process:

* ``float32``: the conversion itself (should agree ~100%);
* ``dynamic``: int8 weights, float activations: what weight quantization alone costs;
* ``int16x8``: int8 weights, int16 activations: activation ranges at 16 bits;
* ``int8`` with 256 and with 1,024 calibration images per model: activations at 8 bits,
  and whether more calibration data helps;
* ``float16`` weights.

For each: fine-label agreement (hard routing), stage-1 (superclass) agreement, the
specialists' agreement where the routes agree, agreement away from near-ties, both
accuracies, and the two-stage pipeline's images per second at batch 256 and 2 threads
(best of 3 passes). It also times the int8 and float32 generalists alone at batch 1 and
256, with LiteRT's default delegates (XNNPACK) and without them, which says whether
XNNPACK runs the int8 model.

    python benchmarks/litert_int8.py                       # runs/default, its first system
    python benchmarks/litert_int8.py --run runs/default --system 4bit

Writes ``benchmarks/results/litert_int8_<mode>.json``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import common

SCRIPT = "litert_int8"
VARIANTS = (("float32", "float32", 0), ("float16", "float16", 0), ("dynamic", "dynamic", 0),
            ("int16x8", "int16x8", 256), ("int8 (256 calibration)", "int8", 256),
            ("int8 (1024 calibration)", "int8", 1024))


def generalist_speed(path: Path, images, threads: int = 2) -> dict:
    """Median ms at batch 1 and images/s at batch 256 of one .tflite model, with and
    without LiteRT's default delegates (XNNPACK)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from supersub_tf.analysis.costs import timed_calls

    result = {}
    for label, resolver in (("xnnpack", OpResolverType.AUTO),
                            ("builtin", OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)):
        for batch, reps in ((1, 200), (256, 5)):
            interpreter = Interpreter(str(path), num_threads=threads,
                                      experimental_op_resolver_type=resolver)
            detail = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
            interpreter.allocate_tensors()
            x = images[:batch]
            if detail["dtype"] != np.float32:
                scale, zero = detail["quantization"]
                x = np.clip(np.round(x / scale + zero), -128, 127).astype(detail["dtype"])

            def call() -> None:
                interpreter.set_tensor(detail["index"], x)
                interpreter.invoke()

            times = timed_calls(call, reps, warmup=3)
            key = f"{label}_ms_batch1" if batch == 1 else f"{label}_ips_batch256"
            result[key] = (1e3 * statistics.median(times) if batch == 1
                           else batch / statistics.median(times))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_run_arguments(parser)
    parser.add_argument("--system", help="the system under systems/ (default: the first)")
    args = parser.parse_args()
    started = time.perf_counter()
    import numpy as np

    from supersub_tf.data.arrays import calibration_images, evaluation_images
    from supersub_tf.data.pipeline import normalize
    from supersub_tf.deltas.storage import load_system
    from supersub_tf.export.measure import keras_predict, measure_export
    from supersub_tf.export.tflite import export_tflite
    from supersub_tf.run.layout import RunLayout

    info = common.ensure_run(common.run_overrides(args.small), run=args.run, wait=args.wait,
                             retrain=args.retrain)
    run_dir, config = info["run_dir"], info["config"]
    tag = args.system or sorted(RunLayout(run_dir).systems.iterdir())[0].name
    system = load_system(RunLayout(run_dir).system(tag)).for_hard_routing()
    images, fine = evaluation_images(config.data)
    calib_x, calib_y = calibration_images(config.data, per_superclass=1024)
    reference = keras_predict(system, images)
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, mode, calibration in VARIANTS:
            out = Path(tmp) / label.replace(" ", "_").replace("(", "").replace(")", "")
            t0 = time.perf_counter()
            export_tflite(system, out, calib_x, calib_y, quantization=mode,
                          calibration_size=max(calibration, 1))
            seconds = time.perf_counter() - t0
            report = measure_export(out, system, images, fine, reference=reference)
            c = report["comparison"]
            results[label] = {**report, "export_seconds": seconds,
                              "calibration_images": calibration}
            margin = {m["min_margin"]: m for m in c["agreement_by_margin"]}
            rows.append([label, common.pct(c["fine_agreement"], 2),
                         common.pct(c["superclass_agreement"], 2),
                         common.pct(c["specialist_agreement"], 2),
                         common.pct(margin.get(0.05, {}).get("agreement"), 2),
                         common.pct(c["keras_accuracy"]), common.pct(c["litert_accuracy"]),
                         round(report["speed"]["images_per_second"]),
                         report["sizes"]["models_bytes"]])
            print(f"[{SCRIPT}] {label}: agreement {c['fine_agreement']:.4f} "
                  f"({seconds:.0f} s to export)", flush=True)
            if mode in ("int8", "float32") and "generalist" not in results.get(mode, {}):
                x = normalize(images[:256], system.backbone.normalization)
                results.setdefault(mode, {})["generalist"] = generalist_speed(
                    out / "generalist.tflite", np.asarray(x))
    common.print_table(
        f"LiteRT against Keras, {run_dir.name}/systems/{tag} ({len(images)} validation images, "
        "hard routing, 2 threads, batch 256)",
        ["export", "fine agree", "stage-1 agree", "stage-2 agree (same route)",
         "agree (margin >= 0.05)", "Keras top-1", "LiteRT top-1", "img/s", "model bytes"], rows)
    speed_rows = [[mode, round(results[mode]["generalist"]["xnnpack_ms_batch1"], 3),
                   round(results[mode]["generalist"]["builtin_ms_batch1"], 3),
                   round(results[mode]["generalist"]["xnnpack_ips_batch256"]),
                   round(results[mode]["generalist"]["builtin_ips_batch256"])]
                  for mode in ("float32", "int8")]
    common.print_table("The generalist alone (2 threads): with XNNPACK (LiteRT's default "
                       "delegate) and without", ["model", "ms batch 1 (XNNPACK)",
                                                 "ms batch 1 (built-in)",
                                                 "img/s 256 (XNNPACK)",
                                                 "img/s 256 (built-in)"], speed_rows)
    path = common.write_result(SCRIPT, common.mode_name(args.small),
                               {"run": common.run_summary(info), "system": tag,
                                "images": len(images), "results": results}, started,
                               args.output)
    print(f"wrote {path} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
