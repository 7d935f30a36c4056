"""Question 8: which routing beyond the paper's hard routing pays, and for how much compute?

One comparison table of every routing variant on the main job's recipe: hard, top-k,
gated and oracle routing over

* the paper's system (the main job's run: plain generalist, plain delta specialists);
* catch-all specialists (``deltas.catch_all``): each also says "not my superclass",
  so top-k and gated routing can reject a wrong route;
* a generalist trained with an auxiliary fine head (``train.generalist_fine_head``),
  same epochs, with plain delta specialists;
* both together.

Each variant is a run of its own (``runs/routing_<variant>``); a variant reuses the
finished networks it shares with another (the vanilla network and the generalist of the
main job's run, the fine-head generalist) by copying their folders, so only what
differs trains. Rows give top-1, top-1 minus the vanilla network's and specialist passes
per image (stage 1's pass not counted).

    python benchmarks/routing_variants.py            # the main job's recipe (~30 min CPU)
    python benchmarks/routing_variants.py --small    # the quick profile (minutes)

Writes ``benchmarks/results/routing_variants_<mode>.json``.
"""

from __future__ import annotations

import argparse
import time

import common

from supersub_tf.config import bits_tag
from supersub_tf.run.layout import RunLayout

SCRIPT = "routing_variants"
#: Variant -> (its overrides, the variant whose generalist it reuses).
VARIANTS = {
    "paper": ([], None),
    "catch_all": (["deltas.catch_all=0.5", "export.savedmodel_routing=hard"], "paper"),
    "fine_head": (["train.generalist_fine_head=0.5"], None),
    "both": (["deltas.catch_all=0.5", "export.savedmodel_routing=hard",
             "train.generalist_fine_head=0.5"], "fine_head"),
}
ROUTING_ORDER = ("hard", "topk", "gated", "oracle")


def train_variant(name: str, base_overrides: list[str], runs: dict, retrain: bool) -> dict:
    """The variant's run (trained where missing); returns its supersub result."""
    overrides, generalist_from = VARIANTS[name]
    if name == "paper":
        runs[name] = common.ensure_run(base_overrides, retrain=retrain)["run_dir"]
    else:
        reuse = {"generalist": runs[generalist_from]} if generalist_from else {}
        runs[name] = common.variant_run(base_overrides, overrides,
                                        f"{runs['paper'].name}_routing_{name}", reuse, retrain)
    tag = bits_tag(common.load_run_config(base_overrides).deltas.bits[0])
    return common.read_json(RunLayout(runs[name]).supersub_result(tag))


def rows_of(name: str, result: dict, generalist: dict, vanilla_top1: float) -> list[list]:
    """Table rows of one variant: one per routing."""
    rows = []
    for routing in ROUTING_ORDER:
        metrics = result["routing"][routing]
        label = f"gated, tau {result['gate_tau']}" if routing == "gated" else routing
        rows.append([name, label, common.pct(generalist["top1"]),
                     common.pct(metrics["top1"]),
                     common.points(metrics["top1"] - vanilla_top1),
                     f"{metrics['specialist_passes']:.2f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_variant_arguments(parser)
    args = parser.parse_args()
    started = time.perf_counter()
    base = common.run_overrides(args.small)
    runs: dict = {}
    results, table = {}, []
    for name in VARIANTS:
        result = train_variant(name, base, runs, args.retrain)
        generalist = common.read_json(RunLayout(runs[name]).metrics("generalist"))
        vanilla = common.read_json(RunLayout(runs["paper"]).metrics("vanilla"))
        results[name] = {"run_dir": str(runs[name]), "overrides": VARIANTS[name][0],
                         "generalist": generalist, "vanilla_top1": vanilla["top1"],
                         "supersub": result}
        table += rows_of(name, result, generalist, vanilla["top1"])
    common.print_table("Routing variants (validation top-1)",
                       ["system", "routing", "generalist (superclass)", "top-1",
                        "minus vanilla", "specialist passes / image"], table)
    for name, r in results.items():
        aux = r["generalist"].get("aux_fine_top1")
        if aux is not None:
            print(f"{name}: the generalist's auxiliary fine head alone: top-1 {common.pct(aux)} "
                  f"(vanilla {common.pct(r['vanilla_top1'])})")
    path = common.write_result(SCRIPT, common.mode_name(args.small),
                               {"variants": results}, started, args.output)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
