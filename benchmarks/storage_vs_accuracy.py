"""Question 4: what do k-bit delta specialists cost, and what accuracy do they keep?

The paper stores each specialist as k-bit deltas of the generalist's weights, so a
system of N specialists costs about ``0.2 N + 1`` networks instead of ``N + 1``. For
deltas of 32 (float), 8, 6, 4 and 2 bits this gives the storage factor ``a`` (the mean
stored specialist file in units of one float32 generalist, ``parameters * 4`` bytes;
see ``supersub_tf.deltas.storage_report.storage_report``), what a specialist's bytes are made
of (codes, scales, its own head and batch norm, file overhead), the system's total
bytes on disk, and Super-Sub's validation top-1 under hard, top-k and oracle routing,
against the vanilla network and against float deltas.

    python benchmarks/storage_vs_accuracy.py                  # runs/default, bits float,8,6,4,2
    python benchmarks/storage_vs_accuracy.py --small          # the quick-profile run (minutes)
    python benchmarks/storage_vs_accuracy.py --run runs/default   # read a run, never train

Full and small modes run the Super-Sub stage for the bit widths their run lacks
(``deltas.bits=[float,8,6,4,2]``; finished delta sets are reused), waiting with
``--wait`` for another job that is writing the run. ``--bits`` picks other widths.
Prints the table and writes JSON to ``benchmarks/results/storage_vs_accuracy_<mode>.json``
and the figure (top-1 against ``a``) beside it as ``.png``.
"""

from __future__ import annotations

import argparse
import time

import common

SCRIPT = "storage_vs_accuracy"
DEFAULT_BITS = "float,8,6,4,2"
PAPER_A = 0.2


def storage_rows(supersub: dict[str, dict], vanilla_top1: float | None) -> list[dict]:
    """One row per bit width: storage and accuracy of the stored system.

    Args:
        supersub: ``supersub/<tag>.json`` contents by tag (each has ``storage`` and
            ``routing``).
        vanilla_top1: The vanilla network's top-1, for the differences (None: none).
    """
    rows = []
    float_top1 = (supersub["float"]["routing"]["hard"]["top1"] if "float" in supersub
                  else None)
    for tag, result in supersub.items():
        storage, routing = result["storage"], result["routing"]
        unit = storage["float32_network_bytes"]
        specialists = storage["specialists"]
        n = len(specialists)

        def mean_units(key: str) -> float:
            return sum(s[key] for s in specialists) / n / unit if n else 0.0

        hard = routing["hard"]["top1"]
        rows.append({
            "tag": tag, "bits": common.tag_bits(tag), "specialists": n,
            "a": storage["a"], "a_n_plus_1": storage["a_n_plus_1"],
            "separate_networks": storage["separate_networks"],
            "codes_units": mean_units("code_bytes"), "scales_units": mean_units("scale_bytes"),
            "owned_units": mean_units("owned_bytes"),
            "overhead_units": mean_units("overhead_bytes"),
            "lzma_saving_units": (mean_units("compression_saving_bytes")
                                  if all("compression_saving_bytes" in x for x in specialists)
                                  else 0.0),
            "specialist_bytes_mean": storage["specialist_bytes"] / n if n else 0,
            "specialist_bytes": storage["specialist_bytes"],
            "generalist_bytes": storage["generalist_bytes"],
            "manifest_bytes": storage["manifest_bytes"], "total_bytes": storage["total_bytes"],
            "total_units": storage["total_units"], "float32_network_bytes": unit,
            "separate_float32_bytes": storage["separate_networks"] * unit,
            "hard_top1": hard, "topk_top1": routing["topk"]["top1"],
            "oracle_top1": routing["oracle"]["top1"],
            "hard_minus_vanilla": None if vanilla_top1 is None else hard - vanilla_top1,
            "hard_minus_float": None if float_top1 is None else hard - float_top1,
        })
    return rows


def print_rows(rows: list[dict], vanilla_top1: float | None, topk: int, title: str) -> None:
    n = rows[0]["specialists"] if rows else 0
    common.print_table(
        title,
        ["deltas", "bits", "a", "a*N + 1", "codes", "scales", "own head+BN", "lzma", "overhead",
         "bytes/specialist", "total bytes", "top-1 hard", f"top-1 top-{topk}", "top-1 oracle",
         "hard - vanilla", "hard - float"],
        [[r["tag"], r["bits"], f"{r['a']:.3f}", f"{r['a_n_plus_1']:.2f}",
          f"{r['codes_units']:.3f}", f"{r['scales_units']:.3f}", f"{r['owned_units']:.3f}",
          f"{-r['lzma_saving_units']:.3f}", f"{r['overhead_units']:.3f}", round(r["specialist_bytes_mean"]), r["total_bytes"],
          common.pct(r["hard_top1"]), common.pct(r["topk_top1"]), common.pct(r["oracle_top1"]),
          common.points(r["hard_minus_vanilla"]), common.points(r["hard_minus_float"])]
         for r in rows]
        + [[f"{n + 1} separate networks", 32, "1.000", f"{n + 1:.2f}", None, None, None, None,
            None,
            rows[0]["float32_network_bytes"] if rows else None,
            rows[0]["separate_float32_bytes"] if rows else None,
            None, None, None, None, None]])
    print(f"a: mean stored specialist in float32 generalists "
          f"({rows[0]['float32_network_bytes']:,} bytes); codes, scales, own head+BN (raw "
          f"arrays), lzma (what compression saved) and overhead split it. Vanilla top-1 "
          f"{common.pct(vanilla_top1)}. The paper: a = {PAPER_A} (0.2N + 1).")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_run_arguments(parser)
    parser.add_argument("--bits", default=DEFAULT_BITS,
                        help=f"delta bit widths to ensure, comma-separated (default "
                             f"{DEFAULT_BITS})")
    args = parser.parse_args()
    started = time.perf_counter()
    from supersub_tf.config import bits_tag, parse_bits
    from supersub_tf.errors import ConfigError

    try:
        tags = [bits_tag(parse_bits(b.strip())) for b in args.bits.split(",") if b.strip()]
    except ConfigError as err:
        parser.error(f"--bits: {err}")
    info = common.ensure_run(common.run_overrides(args.small, [f"deltas.bits=[{args.bits}]"]),
                             run=args.run, wait=args.wait, retrain=args.retrain)
    found = common.supersub_results(info["run_dir"])
    supersub = {t: found[t] for t in sorted(tags, key=common.tag_order) if t in found}
    absent = [t for t in tags if t not in found]
    if not supersub:
        raise SystemExit(f"{info['run_dir']} has none of the bit widths {', '.join(tags)}")
    vanilla = info["report"]["analysis"].get("vanilla") or {}
    rows = storage_rows(supersub, vanilla.get("top1"))
    run = common.run_summary(info)
    topk = info["config"].deltas.topk
    print_rows(rows, vanilla.get("top1"), topk,
               f"Storage against accuracy, run {run['run_dir']} ({run['backbone']['model']} "
               f"x{run['backbone']['width']}, {rows[0]['specialists']} specialists)")
    if absent:
        print(f"(the run has no results for {', '.join(absent)})")
    from supersub_tf.analysis.plots import plot_storage_vs_accuracy

    figure = plot_storage_vs_accuracy(
        rows, common.result_path(SCRIPT, common.mode_name(args.small), args.output)
        .with_suffix(".png"),
        vanilla.get("top1"), PAPER_A)
    print(f"wrote {figure}")
    path = common.write_result(
        SCRIPT, common.mode_name(args.small),
        {"run": run, "bits_wanted": tags, "bits_absent": absent, "topk": topk,
         "vanilla_top1": vanilla.get("top1"), "paper_a": PAPER_A, "rows": rows},
        started, args.output)
    print(f"wrote {path} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
