"""Question 7: at which training budget, if any, does Super-Sub beat the vanilla network?

Runs the budget study (:mod:`supersub_tf.studies.budget`, the same as ``python -m supersub_tf
budget``): the vanilla network, the generalist and 4-bit delta specialists of the main
job's recipe at growing epochs, and per budget the vanilla top-1, the generalist's
superclass accuracy, Super-Sub under each routing, the oracle, the share of errors made
in stage 1, and Super-Sub minus vanilla. Prints the table and writes it as JSON.

    python benchmarks/budget_crossover.py                     # supersub_tf/configs/budget.yaml
    python benchmarks/budget_crossover.py --set 'epochs=[1,2,4,8]'   # a part of the ladder
    python benchmarks/budget_crossover.py --small             # the --quick profile (minutes)

The study resumes from its per-point records in ``benchmarks/results/budget/`` (commit
them), so each machine trains only the budgets not recorded yet. Writes
``benchmarks/results/budget_crossover_<mode>.json``.
"""

from __future__ import annotations

import argparse
import json
import time

import common

SCRIPT = "budget_crossover"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="the study's --quick profile")
    parser.add_argument("--config", default="budget", help="budget YAML or built-in name")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a study setting")
    parser.add_argument("--retrain", action="store_true",
                        help="train again the points whose settings differ")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args()
    started = time.perf_counter()
    from supersub_tf.studies.budget import BUDGET_QUICK_PROFILE, load_budget_config, run_budget

    quick = list(BUDGET_QUICK_PROFILE) if args.small else []
    out = run_budget(load_budget_config(args.config, quick + args.overrides),
                     retrain=args.retrain)
    study = json.loads((out / "budget.json").read_text())
    rows = [[p["epochs"], common.pct(p["vanilla_top1"]), common.pct(p["generalist_top1"]),
             common.pct(p["routing"]["hard"]["top1"]), common.pct(p["routing"]["topk"]["top1"]),
             common.pct(p["routing"]["gated"]["top1"]), common.pct(p["routing"]["oracle"]["top1"]),
             common.pct(p["errors_from_stage1"]),
             common.points(p["routing"]["hard"]["minus_vanilla"]),
             common.points(p["routing"]["topk"]["minus_vanilla"])] for p in study["points"]]
    print(common.text_table(["epochs", "vanilla", "generalist", "hard", "top-k", "gated",
                               "oracle", "stage-1 errors", "hard-vanilla", "topk-vanilla"],
                              rows))
    path = common.write_result(SCRIPT, common.mode_name(args.small),
                               {"study": study, "results_folder": out}, started, args.output)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
