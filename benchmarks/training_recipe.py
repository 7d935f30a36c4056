"""Which backbone and recipe buy the most accuracy per CPU-second on 2 cores?

Each candidate is a set of config overrides on the main job's default config; the
benchmark trains its vanilla network (and, with ``--kinds vanilla,generalist``, its
generalist) on the real data through the main job's own training stage, each in its own
run folder under ``runs/recipe/``, and reports validation top-1, training seconds and
images per second. The first candidate is the default config of commit 86c0827 (ResNet-20
at half width on images resized to 32x32, 4 epochs); every other row changes one or two
things against it:

* Tiny ImageNet's native 64x64 input with a stride-2 stem (``resnet*_s2``): the trunk
  runs at 32x32 as before, but sees the detail the resize threw away;
* a shallower, wider network (ResNet-8 at full width) that trains faster per image;
* label smoothing, lighter regularization, a smaller batch.

    python benchmarks/training_recipe.py                       # the default candidates (about 45 min)
    python benchmarks/training_recipe.py --only r8s2_64 base   # some of them
    python benchmarks/training_recipe.py --kinds vanilla,generalist --only r8s2_64_e8

Finished candidates are reused (their run folders), so a killed benchmark resumes; the
JSON (``benchmarks/results/training_recipe.json``) is rewritten after every candidate.
Seconds are only comparable between rows measured on the same idle machine.
"""

from __future__ import annotations

import argparse
import time

import common

SCRIPT = "training_recipe"

#: label -> (what changes, overrides of supersub_tf/configs/default.yaml)
#: The main job's default of commit 86c0827, spelled out (the default has moved on).
BASE = ["train.model=resnet20", "train.width=0.5", "data.image_size=32", "data.crop_padding=4",
        "train.epochs=4", "train.label_smoothing=0.0", "train.batch_size=128",
        "train.weight_decay=0.0005"]
NATIVE = ["data.image_size=64", "data.crop_padding=8"]
R8S2 = BASE + NATIVE + ["train.model=resnet8_s2", "train.width=1.0"]
CANDIDATES: dict[str, tuple[str, list[str]]] = {
    "base": ("default of 86c0827: ResNet-20 x0.5, 32 px, 4 epochs", BASE),
    "r20s2_64": ("same network, 64 px input, stride-2 stem",
                 BASE + NATIVE + ["train.model=resnet20_s2"]),
    "r8s2_64": ("ResNet-8 x1 (shallow, wide), 64 px, stride-2 stem", R8S2),
    "r8s2_64_ls": ("r8s2_64 + label smoothing 0.1", R8S2 + ["train.label_smoothing=0.1"]),
    "r8s2_64_light": ("r8s2_64, lighter regularization for a short budget: crop padding 4 "
                      "(of 64 px), weight decay 5e-5",
                      R8S2 + ["data.crop_padding=4", "train.weight_decay=5e-5"]),
    "r8s2_64_b64": ("r8s2_64 with batch 64 (twice the steps)", R8S2 + ["train.batch_size=64"]),
    "r8s2_64_light_b64": ("the main job's new recipe at 4 epochs: r8s2_64 + light "
                          "regularization + batch 64",
                          R8S2 + ["data.crop_padding=4", "train.weight_decay=5e-5",
                                  "train.batch_size=64"]),
    "r8s2x1.5_64": ("ResNet-8 x1.5 (wider still), 64 px, stride-2 stem",
                    BASE + NATIVE + ["train.model=resnet8_s2", "train.width=1.5"]),
    "r8s2_64_e6": ("r8s2_64 for 6 epochs (about the baseline's wall time)",
                   R8S2 + ["train.epochs=6"]),
    "r14s2_64": ("ResNet-14 x1, 64 px, stride-2 stem",
                 BASE + NATIVE + ["train.model=resnet14_s2", "train.width=1.0"]),
}
#: What the benchmark runs without --only (the last two are there to be asked for).
DEFAULT_CANDIDATES = ["base", "r20s2_64", "r8s2_64", "r8s2_64_ls", "r8s2_64_light",
                      "r8s2_64_b64", "r8s2_64_light_b64"]


def train_candidate(label: str, overrides: list[str], kinds: list[str]) -> dict:
    """Trains (or reuses) one candidate's networks; returns its row."""
    from supersub_tf.run import train_stage

    config = common.load_run_config(overrides + [f"name={label}", "output_dir=runs/recipe",
                                                 "networks=[" + ",".join(kinds) + "]"])
    metrics = train_stage(config, kinds)
    row = {"label": label, "what": CANDIDATES[label][0], "overrides": overrides,
           "model": config.train.model, "width": config.train.width,
           "image_size": config.data.image_size, "epochs": config.train.epochs,
           "label_smoothing": config.train.label_smoothing}
    for kind in kinds:
        m = metrics[kind]
        row[kind] = {"top1": m["top1"], "parameters": m["parameters"],
                     "train_seconds": m["train_seconds"],
                     "images_per_second": round(m["train_images"] * m["epochs"] /
                                                m["train_seconds"], 1),
                     "final_train_accuracy": m["final_train_accuracy"]}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(CANDIDATES),
                        help=f"candidates to run (default: {' '.join(DEFAULT_CANDIDATES)})")
    parser.add_argument("--kinds", default="vanilla",
                        help="networks per candidate: vanilla or vanilla,generalist")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/"
                                         "training_recipe.json)")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    started = time.perf_counter()
    rows = []
    for label in args.only or DEFAULT_CANDIDATES:
        rows.append(train_candidate(label, CANDIDATES[label][1], kinds))
        common.write_result(SCRIPT, "full", {"kinds": kinds, "rows": rows}, started,
                            args.output or common.RESULTS_DIR / f"{SCRIPT}.json")
    header = ["candidate", "model", "px", "epochs"]
    for kind in kinds:
        header += [f"{kind} top-1", "train s", "img/s"]
    table = []
    for row in rows:
        cells = [row["label"], f"{row['model']} x{row['width']}", row["image_size"],
                 row["epochs"]]
        for kind in kinds:
            cells += [common.pct(row[kind]["top1"]), row[kind]["train_seconds"],
                      row[kind]["images_per_second"]]
        table.append(cells)
    print(common.text_table(header, table))


if __name__ == "__main__":
    main()
