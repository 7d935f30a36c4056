"""A cheaper gate? Gated routing with a floor on the second specialist's p(superclass).

Gated routing (``deltas.gate_tau``) keeps the vanilla network's answer where it is
confident and sends every other image to its top-``k`` superclasses' specialists. Most of
those images are sure of their superclass even when unsure of the class, so the second
pass often adds a block weighted by a small ``p(superclass)``. This asks whether routing
an image to its 2nd..k-th superclass only where that superclass's ``p(s)`` reaches a
floor (a per-image ``k``) buys the default's accuracy for fewer specialist passes.

It is measured as the default was chosen (``benchmarks/heldout_selection.py``): every
``(tau, floor)`` point is scored on the images held out of the training split of
``--heldout`` (a main job run with ``data.test_fraction > 0``); the cheapest point within
0.3 points of that system's best routing is chosen
(:func:`~supersub_tf.supersub.routing.cheapest_within`), and only then read on the
validation split of ``--report`` (the main job whose numbers the README gives), beside
the chosen plain gate (floor 0, today's routing). Both systems' specialists run once on
every image (soft routing's outputs), so each point is a route table over stored
outputs, combined by :func:`~supersub_tf.supersub.routing.combine`.

    python benchmarks/gate_floor.py --heldout runs/heldout --report runs/default

Prints the tables and writes ``benchmarks/results/gate_floor_full.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import common
from supersub_tf.run.layout import RunLayout
from supersub_tf.supersub.routing import (
    cheapest_within, combine, routes_for, specialist_passes)

if TYPE_CHECKING:  # annotations only
    from supersub_tf.hierarchy import Hierarchy

SCRIPT = "gate_floor"
TAUS = np.round(np.arange(0.0, 1.0001, 0.05), 2)
FLOORS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def every_specialist(run_dir: Path, split: str, bits: str
                     ) -> tuple[dict, np.ndarray, Hierarchy]:
    """Stage 1's outputs and every specialist's ``p(subclass | s)`` of each image of
    ``split``, the fine labels, and the hierarchy."""
    from supersub_tf.config import load_config
    from supersub_tf.data import create_source, load_dataset
    from supersub_tf.deltas.storage import load_system
    from supersub_tf.supersub.evaluate import collect_predictions
    from supersub_tf.supersub.pipeline import SuperSubPipeline

    config = load_config(RunLayout(run_dir).config)
    data = load_dataset(config.data, split, training=False, source=create_source(config.data),
                        batch_size=config.train.eval_batch_size)
    pipeline = SuperSubPipeline.from_system(load_system(RunLayout(run_dir).system(bits)))
    if pipeline.stage_one_head != "fine":
        raise SystemExit(f"{run_dir}: gated routing keeps stage 1's answer only with a "
                         "vanilla stage 1 (deltas.base: vanilla)")
    h = pipeline.hierarchy
    probs, labels = collect_predictions(pipeline, data.dataset, ("soft",),
                                        k=h.num_superclasses)
    return probs, labels["fine"], h


def floor_routes(probs: dict, k: int, tau: float, floor: float) -> np.ndarray:
    """Gated routing's route table, with the 2nd..k-th superclass dropped (``-1``) where
    its ``p(superclass)`` is below ``floor``."""
    routes = routes_for(probs["superclass_probs"], "gated", k, tau=tau,
                        stage_one_fine=probs["stage_one_fine"])
    rank_probs = np.take_along_axis(probs["superclass_probs"], np.maximum(routes, 0), 1)
    routes[:, 1:][rank_probs[:, 1:] < floor] = -1
    return routes


def top1(probs: dict, routes: np.ndarray, labels: np.ndarray, hierarchy: Hierarchy) -> float:
    """Top-1 of a route table over the stored outputs (:func:`combine`, as every routing)."""
    fine = combine(probs["superclass_probs"], probs["subclass_probs"], routes, hierarchy,
                   stage_one_fine=probs["stage_one_fine"]).argmax(1)
    return float((fine == labels).mean())


def score(probs: dict, labels: np.ndarray, hierarchy: Hierarchy, k: int, tau: float,
          floor: float) -> dict[str, float]:
    """Top-1 and specialist passes per image of one ``(tau, floor)`` point."""
    routes = floor_routes(probs, k, tau, floor)
    return {"tau": tau, "floor": floor, "top1": top1(probs, routes, labels, hierarchy),
            "specialist_passes": specialist_passes(routes)}


def best_routing(probs: dict, labels: np.ndarray, hierarchy: Hierarchy, k: int) -> float:
    """The best held-out top-1 of hard, top-k and soft routing (what the default's
    tolerance is measured from)."""
    return max(top1(probs, routes_for(probs["superclass_probs"], routing, k), labels, hierarchy)
               for routing in ("hard", "topk", "soft"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heldout", type=Path, default=Path("runs/heldout"),
                        help="a main job run with data.test_fraction > 0 (chooses)")
    parser.add_argument("--report", type=Path, default=Path("runs/default"),
                        help="the main job whose validation split reports the choice")
    parser.add_argument("--bits", default="4bit", help="the stored system of both runs")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args()
    started = time.perf_counter()
    from supersub_tf.config import load_config

    k = load_config(RunLayout(args.heldout).config).deltas.topk
    held, held_labels, h = every_specialist(args.heldout, "test", args.bits)
    val, val_labels, h_val = every_specialist(args.report, "val", args.bits)
    best = best_routing(held, held_labels, h, k)
    grid = [score(held, held_labels, h, k, float(tau), floor)
            for floor in FLOORS for tau in TAUS]
    chosen = {"floor": cheapest_within(grid, best),
              "plain gate": cheapest_within([p for p in grid if p["floor"] == 0.0], best)}
    rows = []
    for name, point in chosen.items():
        on_val = score(val, val_labels, h_val, k, point["tau"], point["floor"])
        rows.append({"gate": name, "tau": point["tau"], "floor": point["floor"],
                     "heldout_top1": point["top1"],
                     "heldout_passes": point["specialist_passes"],
                     "val_top1": on_val["top1"], "val_passes": on_val["specialist_passes"]})
    common.print_table(
        f"Gated routing with a floor on p(s) of the extra specialists, chosen on "
        f"{len(held_labels)} held-out images (best routing {common.pct(best)}), read on "
        f"{len(val_labels)} validation images",
        ["gate", "tau", "floor", "held-out top-1", "passes", "val top-1", "passes"],
        [[r["gate"], f"{r['tau']:.2f}", f"{r['floor']:.2f}", common.pct(r["heldout_top1"]),
          f"{r['heldout_passes']:.2f}", common.pct(r["val_top1"]),
          f"{r['val_passes']:.2f}"] for r in rows])
    payload = {"heldout_run": str(args.heldout), "report_run": str(args.report),
               "bits": args.bits, "k": k, "best_routing_heldout_top1": best,
               "tolerance": 0.003, "chosen": rows, "heldout_grid": grid}
    print(f"[{SCRIPT}] {common.write_result(SCRIPT, 'full', payload, started, args.output)}")


if __name__ == "__main__":
    main()
