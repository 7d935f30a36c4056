"""CPU training speed under TensorFlow's thread and oneDNN settings.

Trains a backbone on random in-memory batches (no input pipeline) in a fresh process
per setting, because oneDNN and thread counts are fixed when TensorFlow starts:

* ``TF_ENABLE_ONEDNN_OPTS=0``, the project's default since oneDNN crashed TensorFlow
  2.21 natively on these CPUs (see ``supersub_tf/__init__.py``), against ``1``, the
  opt-in (about twice as fast where it does not crash);
* TensorFlow's default thread pools, or intra-op = cores and inter-op = 1 or 2.

    python benchmarks/cpu_training_speed.py                  # resnet20, 32x32
    python benchmarks/cpu_training_speed.py --small          # fewer steps
    python benchmarks/cpu_training_speed.py --model resnet8_s2 --width 1 --image-size 64

Prints a table and writes JSON (default ``benchmarks/results/cpu_training_speed.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

SETTINGS = [  # (label, TF_ENABLE_ONEDNN_OPTS, intra-op threads, inter-op threads)
    ("project default: oneDNN off", "0", 0, 0),
    ("oneDNN off, intra=cores, inter=1", "0", -1, 1),
    ("oneDNN off, intra=cores, inter=2", "0", -1, 2),
    ("opt-in: oneDNN on", "1", 0, 0),
]

WORKER = r"""
import json, sys, time
import numpy as np
import supersub_tf
import tensorflow as tf
import tf_keras as keras
from supersub_tf.models import create_model
args = json.loads(sys.argv[1])
if args["intra"]:
    tf.config.threading.set_intra_op_parallelism_threads(args["intra"])
    tf.config.threading.set_inter_op_parallelism_threads(args["inter"])
size, batch = args["image_size"], args["batch_size"]
model = create_model(args["model"], 10, (size, size, 3), width=args["width"])
model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype("float32")
y = np.arange(batch) % 10
for _ in range(3):
    model.train_on_batch(x, y)
start = time.perf_counter()
for _ in range(args["steps"]):
    model.train_on_batch(x, y)
print(json.dumps({"images_per_second": args["steps"] * batch / (time.perf_counter() - start)}))
"""


def run_setting(onednn: str, intra: int, inter: int,
                args: argparse.Namespace) -> float | None:
    """Images/second of one setting, measured in a fresh Python process (None when that
    process crashed)."""
    cores = os.cpu_count() or 1
    spec = {"model": args.model, "width": args.width, "image_size": args.image_size,
            "batch_size": args.batch_size,
            "steps": args.steps, "intra": cores if intra == -1 else intra, "inter": inter}
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", WORKER, json.dumps(spec)], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:  # oneDNN's native crash ends the worker with a signal
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--small", action="store_true", help="10 steps per setting")
    parser.add_argument("--output", default="benchmarks/results/cpu_training_speed.json")
    args = parser.parse_args()
    if args.small:
        args.steps = 10
    rows = []
    for label, onednn, intra, inter in SETTINGS:
        rate = run_setting(onednn, intra, inter, args)
        rows.append({"setting": label, "TF_ENABLE_ONEDNN_OPTS": onednn,
                     "intra_op_threads": intra, "inter_op_threads": inter,
                     "train_images_per_second": None if rate is None else round(rate, 1),
                     "crashed": rate is None})
        shown = "crashed" if rate is None else f"{rate:8.1f} img/s"
        print(f"{label:36s} {shown}", flush=True)
    result = {"benchmark": "cpu_training_speed", "model": args.model, "width": args.width,
              "image_size": args.image_size, "batch_size": args.batch_size, "steps": args.steps,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "rows": rows}
    from supersub_tf.atomic import atomic_write_text

    atomic_write_text(Path(args.output), json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
