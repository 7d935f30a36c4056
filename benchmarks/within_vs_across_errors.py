"""Question 1: do the vanilla network's mistakes stay within the true superclass?

The paper's first finding: most of an ImageNet network's errors pick a wrong subclass
of the right superclass. This reads the vanilla network's validation errors from a run
of the main job and gives, per superclass and overall, the share of errors that stay
within the superclass against the share uniformly random wrong guesses would have
(chance: ``(n_sub - 1) / (C - 1)`` for an image of a superclass with ``n_sub`` of the
``C`` classes), their ratio, the superclass accuracy of the vanilla network's top-1,
and the most confused class pairs.

    python benchmarks/within_vs_across_errors.py                  # the default run (runs/default)
    python benchmarks/within_vs_across_errors.py --small          # the quick-profile run (minutes)
    python benchmarks/within_vs_across_errors.py --run runs/default   # read a run, never train

Full and small modes train or resume their run when it is incomplete (see
``benchmarks/common.py``). Prints the tables and writes JSON to
``benchmarks/results/within_vs_across_errors_<mode>.json``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common

SCRIPT = "within_vs_across_errors"


def error_rows(report: dict[str, Any]) -> tuple[list[dict], dict]:
    """Per-superclass rows and the overall row of within/across errors against chance.

    Args:
        report: A run's ``report.json`` with the vanilla network's analysis.
    """
    vanilla = report["analysis"].get("vanilla")
    if not vanilla:
        raise SystemExit("the run has no vanilla network analysis (report.json: "
                         "analysis.vanilla)")
    sizes = {row["superclass"]: row["subclasses"] for row in report["data"]["rows"]}
    classes = sum(sizes.values())
    rows = []
    for r in vanilla["per_superclass"]:
        errors = r["within_errors"] + r["across_errors"]
        within = r["within_errors"] / errors if errors else None
        chance = (sizes[r["superclass"]] - 1) / (classes - 1) if classes > 1 else 0.0
        rows.append({"superclass": r["superclass"], "subclasses": sizes[r["superclass"]],
                     "images": r["images"], "fine_accuracy": r["fine_accuracy"],
                     "superclass_accuracy": r["superclass_accuracy"], "errors": errors,
                     "within_errors": r["within_errors"], "across_errors": r["across_errors"],
                     "within_share": within, "chance_within_share": chance,
                     "times_chance": within / chance if within is not None and chance else None})
    e = vanilla["errors"]
    overall = {"superclass": "all", "subclasses": classes, "images": e["images"],
               "fine_accuracy": vanilla["top1"],
               "superclass_accuracy": vanilla["superclass_accuracy"]["from_top1"],
               "errors": e["errors"], "within_errors": e["within"], "across_errors": e["across"],
               "within_share": e["within_share"], "chance_within_share": e["chance_within_share"],
               "times_chance": (e["within_share"] / e["chance_within_share"]
                                if e["chance_within_share"] else None)}
    return rows, overall


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Everything this benchmark reports, from a run's ``report.json``."""
    rows, overall = error_rows(report)
    vanilla = report["analysis"]["vanilla"]
    pairs = vanilla.get("most_confused_pairs", [])
    severity = vanilla.get("severity") or {}
    return {
        "overall": overall, "per_superclass": rows,
        "superclasses_above_chance": sum(r["within_share"] is not None and
                                         r["within_share"] > r["chance_within_share"]
                                         for r in rows),
        "superclasses_mostly_within": sum(r["within_share"] is not None and
                                          r["within_share"] > 0.5 for r in rows),
        "superclass_accuracy_from_summed_probs":
            vanilla["superclass_accuracy"]["from_summed_probs"],
        "most_confused_pairs": [{k: p[k] for k in ("true_name", "predicted_name",
                                                   "true_superclass", "predicted_superclass",
                                                   "count", "share", "same_superclass")}
                                for p in pairs],
        "top_pairs_within": sum(bool(p["same_superclass"]) for p in pairs),
        "mean_wordnet_lca_height": severity.get("mean_wordnet_height"),
    }


def print_summary(result: dict[str, Any], title: str) -> None:
    rows = result["per_superclass"] + [result["overall"]]
    common.print_table(
        title,
        ["superclass", "subclasses", "images", "fine acc", "superclass acc", "errors",
         "within", "across", "within share", "chance", "x chance"],
        [[r["superclass"], r["subclasses"], r["images"], common.pct(r["fine_accuracy"]),
          common.pct(r["superclass_accuracy"]), r["errors"], r["within_errors"],
          r["across_errors"], common.pct(r["within_share"]),
          common.pct(r["chance_within_share"]),
          "-" if r["times_chance"] is None else f"{r['times_chance']:.1f}"] for r in rows])
    o = result["overall"]
    print(f"{common.pct(o['within_share'])} of the vanilla network's {o['errors']:,} errors stay "
          f"within the true superclass (chance {common.pct(o['chance_within_share'])}, "
          f"{o['times_chance']:.1f}x); above chance in {result['superclasses_above_chance']} "
          f"of {len(result['per_superclass'])} superclasses, a majority within in "
          f"{result['superclasses_mostly_within']}.")
    if result["mean_wordnet_lca_height"] is not None:
        print(f"Mean WordNet LCA height of the errors: {result['mean_wordnet_lca_height']:.2f}.")
    print()
    pairs = result["most_confused_pairs"]
    if pairs:
        common.print_table(
            f"Most confused pairs ({result['top_pairs_within']} of {len(pairs)} within a "
            "superclass)",
            ["true", "predicted", "count", "share of true class", "same superclass"],
            [[f"{p['true_name']} ({p['true_superclass']})",
              f"{p['predicted_name']} ({p['predicted_superclass']})", p["count"],
              common.pct(p["share"]), p["same_superclass"]] for p in pairs], align="llrrr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_run_arguments(parser)
    args = parser.parse_args()
    started = time.perf_counter()
    info = common.ensure_run(common.run_overrides(args.small), run=args.run, wait=args.wait,
                             retrain=args.retrain)
    result = summarize(info["report"])
    run = common.run_summary(info)
    print_summary(result, f"Vanilla network's errors, run {run['run_dir']} "
                          f"({run['backbone']['model']} x{run['backbone']['width']}, "
                          f"{run['epochs']} epochs)")
    path = common.write_result(SCRIPT, common.mode_name(args.small), {"run": run, **result},
                               started, args.output)
    print(f"wrote {path} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
