"""Question 6: does Super-Sub beat simply making the vanilla network bigger?

Runs the scaling study (:mod:`supersub_tf.studies.scaling`, the same as ``python -m supersub_tf
scale``): vanilla networks of growing size and Super-Sub systems on the smaller ones,
all with the main job's data, augmentation and epochs. Prints every point (parameters,
device-resident parameters, stored bytes, FLOPs, CPU latency and throughput, top-1,
train-val gap) and each Super-Sub system against the vanilla family interpolated to the
same cost, and writes them as JSON.

    python benchmarks/scaling_study.py            # supersub_tf/configs/scaling.yaml (about 45 min on 2 cores)
    python benchmarks/scaling_study.py --small    # the --quick profile (a few minutes)
    python benchmarks/scaling_study.py --study runs/scaling   # read a finished study only

The study is resumable: trained points are kept, a rerun trains only what is missing.
Writes ``benchmarks/results/scaling_study_<mode>.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common

SCRIPT = "scaling_study"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true",
                        help="the study's --quick profile (minutes)")
    parser.add_argument("--config", default="scaling", help="scaling YAML or built-in name")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a study setting")
    parser.add_argument("--study", help="read this finished study folder; never train")
    parser.add_argument("--retrain", action="store_true",
                        help="train again the points' stages whose settings differ")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args()
    started = time.perf_counter()

    from supersub_tf.analysis.scaling_plots import equal_cost_rows, points_rows
    from supersub_tf.studies.scaling import SCALING_QUICK_PROFILE, load_scaling_config, run_scaling

    if args.study:
        study_dir = Path(args.study)
    else:
        quick = list(SCALING_QUICK_PROFILE) if args.small else []
        study_dir = run_scaling(load_scaling_config(args.config, quick + args.overrides),
                                retrain=args.retrain)
    study = common.read_json(study_dir / "scaling.json")
    points = study["points"]
    common.print_table(
        f"Scaling study {study_dir}: {study['dataset']} / {study['hierarchy']}, "
        f"{study['epochs']} epochs",
        ["point", "kind", "parameters", "on device", "stored kB", "files kB", "MFLOPs/img",
         "ms", "img/s", "top-1", "top-5", "train acc", "train-val gap", "train s"],
        points_rows(points))
    equal = equal_cost_rows(points)
    common.print_table("Super-Sub against the vanilla family at equal cost",
                       ["system", "cost", "Super-Sub top-1", "vanilla top-1", "difference"],
                       equal)
    payload = {"study_dir": str(study_dir), "study_wall_seconds": study.get("wall_seconds"),
               "equal_cost": [dict(zip(["system", "cost", "supersub_top1", "vanilla_top1",
                                        "difference"], row)) for row in equal],
               "points": [{k: v for k, v in p.items() if k != "curves"} for p in points]}
    path = common.write_result(SCRIPT, common.mode_name(args.small), payload, started,
                               args.output)
    print(f"wrote {path} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
