"""Input pipeline throughput: images/second of the training stream on this machine.

Measures the Tiny ImageNet training split (decode + resize + random crop + flip +
normalise + batch) at 32x32 and 64x64, once straight from the JPEG bytes (first epoch,
``cache=False``) and once from the in-memory cache (later epochs). A small ResNet
trains at about 250 img/s on 2 CPU cores, so the pipeline must be far faster.

    python benchmarks/input_pipeline.py                 # full: all 33,500 images
    python benchmarks/input_pipeline.py --small         # 100 images per class

Prints a table and writes JSON (default ``benchmarks/results/input_pipeline.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import supersub_tf  # noqa: F401  (selects tf_keras and oneDNN before TensorFlow loads)
from supersub_tf.atomic import atomic_write_text
from supersub_tf.config import DataConfig
from supersub_tf.data import create_source, load_dataset


def images_per_second(dataset, epochs: int = 1) -> tuple[float, int]:
    """Iterates ``dataset`` for ``epochs`` and returns (images/s, images)."""
    count, start = 0, time.perf_counter()
    for _ in range(epochs):
        for images, _ in dataset:
            count += int(images.shape[0])
    return count / (time.perf_counter() - start), count


def measure(size: int, max_per_class: int, batch_size: int) -> list[dict]:
    """Throughput rows for one image size: decoding from JPEG, and from the cache."""
    rows = []
    for cached in (False, True):
        config = DataConfig(dataset="tiny_imagenet", preset="tiny_imagenet_10", image_size=size,
                            max_per_class=max_per_class, cache=cached)
        source = create_source(config)
        data = load_dataset(config, "train", batch_size=batch_size, source=source)
        if cached:
            images_per_second(data.dataset)  # first epoch fills the cache
        rate, count = images_per_second(data.dataset)
        rows.append({"image_size": size, "source": "memory cache" if cached else "JPEG decode",
                     "images": count, "images_per_second": round(rate, 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="100 images per class")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--output", default="benchmarks/results/input_pipeline.json")
    args = parser.parse_args()
    max_per_class = 100 if args.small else 0

    rows = [row for size in (32, 64) for row in measure(size, max_per_class, args.batch_size)]
    print(f"{'size':>5}  {'source':<13} {'images':>7}  {'img/s':>9}")
    for r in rows:
        print(f"{r['image_size']:>5}  {r['source']:<13} {r['images']:>7}  "
              f"{r['images_per_second']:>9,.0f}")
    result = {
        "benchmark": "input_pipeline",
        "mode": "small" if args.small else "full",
        "batch_size": args.batch_size,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "oneDNN": os.environ.get("TF_ENABLE_ONEDNN_OPTS")},
        "config": dataclasses.asdict(DataConfig()),
        "rows": rows,
    }
    atomic_write_text(Path(args.output), json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
