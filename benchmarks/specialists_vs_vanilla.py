"""Question 2: does a specialist beat the vanilla network on its own superclass?

The paper's second finding: a network trained only on one superclass's images
(a specialist, given the true superclass) classifies its subclasses better than the
vanilla network over all classes. Per superclass this gives the independent
specialist's validation accuracy against the vanilla network on the same images,
restricted to that superclass's subclasses (the fair comparison) and unrestricted,
the differences in points, the training budgets (epochs, optimizer steps), and how many
superclasses the specialists win.

A specialist at the same epochs takes only its superclass's share of the vanilla
network's steps (all N together cost one vanilla network), so the comparison is made
twice: at equal epochs (the default run) and with 4x the specialist epochs (full mode:
``runs/specialists_x4``, ``--set name=specialists_x4 --set train.specialist_epochs=16``;
each specialist still takes fewer steps than the vanilla network, all together 4x).
Each run compares its specialists with its own vanilla network.

    python benchmarks/specialists_vs_vanilla.py          # runs/default and runs/specialists_x4
    python benchmarks/specialists_vs_vanilla.py --small         # quick-profile runs (minutes)
    python benchmarks/specialists_vs_vanilla.py --run runs/default --x4-run runs/specialists_x4

Full and small modes train or resume their runs when incomplete (the 4x run trains only
the vanilla network, generalist and specialists; small mode's 4x run
``bench_small_x4`` only the vanilla network and specialists); ``--no-x4`` skips it.
``--run``/``--x4-run`` read runs as they are. Prints the tables and writes JSON to
``benchmarks/results/specialists_vs_vanilla_<mode>.json``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common

SCRIPT = "specialists_vs_vanilla"
EPOCH_FACTOR = 4


def comparison(report: dict[str, Any], batch_size: int | None = None) -> dict[str, Any]:
    """Specialists against the vanilla network in one run's ``report.json``.

    A network whose metrics predate the ``steps`` key gets ``ceil(train_images /
    batch_size) * epochs`` (with ``batch_size`` given; ``steps_estimated`` says so).

    Returns:
        ``rows`` (per superclass: accuracies, differences, steps), ``wins_restricted``,
        ``wins_unrestricted``, ``superclasses``, image-weighted means, and the steps of
        the vanilla network and of all specialists together.
    """
    rows_in = report["analysis"].get("specialists_vs_vanilla")
    if not rows_in:
        raise SystemExit("the run has no specialists-vs-vanilla analysis (report.json: "
                         "analysis.specialists_vs_vanilla)")
    networks = report["networks"]
    estimated = False

    def steps_of(net: dict[str, Any]) -> int | None:
        nonlocal estimated
        if net.get("steps") is not None:
            return net["steps"]
        if batch_size and net.get("train_images") and net.get("epochs"):
            estimated = True
            return -(-net["train_images"] // batch_size) * net["epochs"]
        return None

    rows = []
    for r in rows_in:
        net = networks.get(f"specialist/{r['superclass']}", {})
        rows.append({**r, "epochs": net.get("epochs"), "steps": steps_of(net),
                     "minus_restricted": r["specialist"] - r["vanilla_restricted"],
                     "minus_unrestricted": r["specialist"] - r["vanilla"]})
    images = sum(r["images"] for r in rows)

    def mean(key: str) -> float:
        return sum(r[key] * r["images"] for r in rows) / images

    vanilla = networks.get("vanilla", {})
    steps = [r["steps"] for r in rows]
    return {
        "rows": rows, "superclasses": len(rows),
        "wins_restricted": sum(r["specialist"] > r["vanilla_restricted"] for r in rows),
        "wins_unrestricted": sum(r["specialist"] > r["vanilla"] for r in rows),
        "mean_specialist": mean("specialist"),
        "mean_vanilla_restricted": mean("vanilla_restricted"),
        "mean_vanilla": mean("vanilla"),
        "vanilla_top1": vanilla.get("top1"), "vanilla_epochs": vanilla.get("epochs"),
        "vanilla_steps": steps_of(vanilla) if vanilla else None,
        "specialist_steps_total": None if None in steps else sum(steps),
        "steps_estimated": estimated,
    }


def print_comparison(label: str, result: dict[str, Any]) -> None:
    rows = result["rows"]
    common.print_table(
        f"{label}: specialists beat the restricted vanilla network on "
        f"{result['wins_restricted']} of {result['superclasses']} superclasses",
        ["superclass", "images", "epochs", "steps", "specialist", "vanilla restricted",
         "vanilla", "vs restricted (pts)", "vs vanilla (pts)"],
        [[r["superclass"], r["images"], r["epochs"], r["steps"], common.pct(r["specialist"]),
          common.pct(r["vanilla_restricted"]), common.pct(r["vanilla"]),
          common.points(r["minus_restricted"]), common.points(r["minus_unrestricted"])]
         for r in rows]
        + [["all (image-weighted)", sum(r["images"] for r in rows), None,
            result["specialist_steps_total"], common.pct(result["mean_specialist"]),
            common.pct(result["mean_vanilla_restricted"]), common.pct(result["mean_vanilla"]),
            common.points(result["mean_specialist"] - result["mean_vanilla_restricted"]),
            common.points(result["mean_specialist"] - result["mean_vanilla"])]])


def print_overview(results: list[dict[str, Any]]) -> None:
    common.print_table(
        "Summary",
        ["comparison", "run", "specialist epochs", "steps (all specialists)",
         "vanilla steps", "wins vs restricted", "wins vs vanilla", "mean specialist",
         "mean restricted"],
        [[r["label"], r["run"]["run_dir"], r["run"]["specialist_epochs"],
          r["specialist_steps_total"], r["vanilla_steps"],
          f"{r['wins_restricted']}/{r['superclasses']}",
          f"{r['wins_unrestricted']}/{r['superclasses']}", common.pct(r["mean_specialist"]),
          common.pct(r["mean_vanilla_restricted"])] for r in results], align="llrrrrrrr")
    for r in results:
        if r["steps_estimated"]:
            print(f"({r['run']['run_dir']}: some networks' metrics predate the steps count; "
                  "their steps are estimated as ceil(train images / batch size) * epochs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_run_arguments(parser, "the runs")
    parser.add_argument("--x4-run", metavar="DIR",
                        help="read this finished run as the 4x-specialist-epochs comparison")
    parser.add_argument("--no-x4", action="store_true",
                        help="only the equal-epochs run (no 4x-specialist-epochs run)")
    args = parser.parse_args()
    started = time.perf_counter()

    # The main job no longer trains independent specialists by default: ask for them.
    equal = common.run_overrides(args.small, ["networks=[vanilla,generalist,specialists,supersub]"])
    epochs = common.load_run_config(equal).train.epochs
    x4 = common.run_overrides(args.small, [
        f"name={common.SMALL_RUN}_x4" if args.small else "name=specialists_x4",
        f"train.specialist_epochs={EPOCH_FACTOR * epochs}",
        "networks=[vanilla,specialists]" if args.small
        else "networks=[vanilla,generalist,specialists]"])
    plans = [("equal epochs", equal, args.run)]
    if args.x4_run or not (args.no_x4 or args.run):
        plans.append((f"{EPOCH_FACTOR}x specialist epochs", x4, args.x4_run))

    results = []
    for label, overrides, run in plans:
        info = common.ensure_run(overrides, run=run, wait=args.wait, retrain=args.retrain)
        result = {"label": label, "run": common.run_summary(info),
                  **comparison(info["report"], info["config"].train.batch_size)}
        print_comparison(f"{label}, run {result['run']['run_dir']}", result)
        results.append(result)
    print_overview(results)
    path = common.write_result(SCRIPT, common.mode_name(args.small), {"comparisons": results},
                               started, args.output)
    print(f"wrote {path} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
