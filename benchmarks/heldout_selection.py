"""Choose the Super-Sub design on held-out images, then report it on the validation split.

A design picked by its validation accuracy and then reported on that same split is tuned
to the numbers it reports. This picks among candidate designs on images held out of the
*training* split (``data.test_fraction``: a share of each class set aside before any
network trains, so no network has seen them), and only then reads the chosen design's
numbers on the official validation split.

Each candidate is a finished main job (``--candidate NAME=RUN_DIR``) run with the same
``data`` settings and ``data.test_fraction > 0``, e.g. one shared vanilla network with
specialists of 3, 9 and 18 epochs::

    python -m supersub_tf run --set name=heldout --set data.test_fraction=0.1
    python -m supersub_tf run --set name=heldout_e3 --set data.test_fraction=0.1 \\
        --set deltas.epochs=3 --set deltas.learning_rate=0.02   # after copying heldout/vanilla
    python benchmarks/heldout_selection.py --candidate "9 epochs=runs/heldout" \\
        --candidate "3 epochs=runs/heldout_e3"

Every stored system (each bit width) of every candidate is scored under every inference
routing on the held-out images; the best held-out top-1 wins (ties: fewer specialist
passes, then the order given). Gated routing's threshold is chosen the same way: on the
chosen system's held-out gated curve (``tau`` in steps of 0.05), the cheapest point
(fewest specialist passes) whose top-1 is within 0.3 points of that system's best
routing (:func:`~supersub_tf.supersub.routing.cheapest_within`), the default
``deltas.gate_tau``. Prints the tables and writes
``benchmarks/results/heldout_selection_full.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

import common
from supersub_tf.config import load_config
from supersub_tf.run.layout import RunLayout
from supersub_tf.supersub.routing import cheapest_within

SCRIPT = "heldout_selection"


#: Gated routing's thresholds on the held-out curve.
TAUS = np.round(np.arange(0.0, 1.0001, 0.05), 2)


def heldout_scores(run_dir: Path, batch_size: int | None = None
                   ) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, float]]]]:
    """Top-1 and specialist passes per image of every stored system of ``run_dir`` under
    every inference routing, on its held-out (``test``) images, with the validation
    top-1 the main job recorded for the same system and routing; and each system's
    gated curve on the held-out images (by bit tag)."""
    from supersub_tf.data import create_source, load_dataset
    from supersub_tf.deltas.storage import load_system
    from supersub_tf.supersub.evaluate import collect_predictions
    from supersub_tf.supersub.pipeline import SuperSubPipeline
    from supersub_tf.supersub.routing import INFERENCE_ROUTINGS, gated_curve

    config = load_config(RunLayout(run_dir).config)
    if config.data.test_fraction <= 0:
        raise SystemExit(f"{run_dir}: trained without held-out images (data.test_fraction "
                         "is 0); train the candidates with --set data.test_fraction=0.1")
    source = create_source(config.data)
    test = load_dataset(config.data, "test", training=False, source=source,
                        batch_size=batch_size or config.train.eval_batch_size)
    validation = common.supersub_results(run_dir)
    rows, curves = [], {}
    for tag in sorted(validation, key=common.tag_order):
        pipeline = SuperSubPipeline.from_system(load_system(RunLayout(run_dir).system(tag)))
        probs, labels = collect_predictions(pipeline, test.dataset, INFERENCE_ROUTINGS,
                                            k=config.deltas.topk, tau=config.deltas.gate_tau)
        for routing in INFERENCE_ROUTINGS:
            rows.append({
                "bits": tag, "routing": routing,
                "heldout_top1": float((probs[routing].argmax(1) == labels["fine"]).mean()),
                "heldout_images": int(len(labels["fine"])),
                "specialist_passes": float(probs[f"{routing}_passes"]),
                "val_top1": validation[tag]["routing"].get(routing, {}).get("top1")})
        curves[tag] = gated_curve(probs["superclass_probs"], probs["subclass_probs"],
                                  labels["fine"], pipeline.hierarchy, config.deltas.topk,
                                  taus=TAUS, other_probs=probs.get("other_probs"),
                                  stage_one_fine=probs.get("stage_one_fine"))
    return rows, curves


def choose(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """The row with the best held-out top-1; ties go to fewer specialist passes, then to
    the earlier candidate."""
    order = {id(row): i for i, row in enumerate(candidates)}
    return max(candidates, key=lambda r: (r["heldout_top1"], -r["specialist_passes"],
                                          -order[id(r)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidate", action="append", required=True, metavar="NAME=RUN_DIR",
                        help="a finished main job trained with data.test_fraction > 0")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args()
    started = time.perf_counter()
    rows, curves, data_settings = [], {}, None
    for spec in args.candidate:
        name, _, path = spec.partition("=")
        run_dir = Path(path).resolve()
        data = load_config(RunLayout(run_dir).config).data
        if data_settings is not None and data != data_settings:
            raise SystemExit(f"{run_dir}: other data settings than the first candidate's; "
                             "candidates must hold out the same images")
        data_settings = data
        scored, curves[name] = heldout_scores(run_dir)
        rows += [{"candidate": name, "run": str(run_dir), **row} for row in scored]
    chosen = choose(rows)
    # Gated routing's threshold, on the chosen system's held-out curve: the best routing
    # of that system within 0.3 points, at the fewest specialist passes.
    curve = curves[chosen["candidate"]][chosen["bits"]]
    best = max(r["heldout_top1"] for r in rows
               if (r["candidate"], r["bits"]) == (chosen["candidate"], chosen["bits"]))
    tau = cheapest_within(curve, best)
    common.print_table(
        f"Gated routing of {chosen['candidate']}, {chosen['bits']} deltas, on the held-out "
        f"images (best routing {common.pct(best)}; chosen tau: *)",
        ["tau", "held-out top-1", "passes"],
        [[("* " if point is tau else "") + f"{point['tau']:.2f}", common.pct(point["top1"]),
          f"{point['specialist_passes']:.2f}"] for point in curve])
    common.print_table(
        "Candidates on the held-out images (chosen: *)",
        ["candidate", "deltas", "routing", "held-out top-1", "passes", "val top-1"],
        [[("* " if row is chosen else "") + row["candidate"], row["bits"], row["routing"],
          common.pct(row["heldout_top1"]), f"{row['specialist_passes']:.2f}",
          common.pct(row["val_top1"]) if row["val_top1"] is not None else "-"]
         for row in rows])
    vanilla = {row["run"]: common.read_json(RunLayout(Path(row["run"])).metrics("vanilla"))
               ["top1"] for row in rows}
    payload = {"chosen": {**chosen, "val_vanilla_top1": vanilla[chosen["run"]],
                          "val_minus_vanilla": (chosen["val_top1"] - vanilla[chosen["run"]]
                                                if chosen["val_top1"] is not None else None)},
               "heldout_spread": float(np.ptp([r["heldout_top1"] for r in rows])),
               "gate_tau": {"chosen": tau["tau"], "point": tau, "best_routing_top1": best,
                            "tolerance": 0.003, "curve": curve},
               "candidates": rows}
    path = common.write_result(SCRIPT, "full", payload, started, args.output)
    print(f"chosen: {chosen['candidate']}, {chosen['bits']} deltas, {chosen['routing']} "
          f"routing; on the validation split {common.pct(chosen['val_top1'])} "
          f"(vanilla {common.pct(vanilla[chosen['run']])})")
    print(f"gated routing's threshold: tau {tau['tau']:.2f} ({common.pct(tau['top1'])} "
          f"held-out, {tau['specialist_passes']:.2f} specialist passes per image)")
    print(f"[{SCRIPT}] {path}")


if __name__ == "__main__":
    main()
