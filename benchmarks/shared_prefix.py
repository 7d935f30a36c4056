"""Issue 12's shared prefix: accuracy, storage and speed of delta specialists from stage s.

With ``deltas.from_stage = s`` the specialists adapt only trunk stages ``>= s``, so the
stem and stages ``< s`` are the base network's for every specialist: the pipeline runs
them once per batch (in stage 1) and starts stage 2 from their output. This script
trains the main job's delta specialists at s = 0 to 3 (``--stages``) on its base network (the vanilla
network by default; each ``s`` is a run of its own, ``runs/<name>_from<s>``, with the
main job's finished networks copied in, so only the delta specialists train; s = 0 is
the main job's own run) and puts, side by side, in one process:

* accuracy: Super-Sub top-1 under hard, top-2, soft and gated routing (the run's
  ``deltas.gate_tau``), oracle, hard minus vanilla;
* storage: ``a`` of ``a * N + 1`` networks;
* speed: hard and gated routing's median latency at batch 1 and throughput at batch 256
  (on the run's validation images, so routing spreads as in use), against the base
  network alone.

    python benchmarks/shared_prefix.py            # the main job's recipe (~15 min CPU)
    python benchmarks/shared_prefix.py --small    # the quick profile (minutes)

Writes ``benchmarks/results/shared_prefix_<mode>.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import common

from supersub_tf.analysis.costs import timed_side_by_side
from supersub_tf.config import bits_tag
from supersub_tf.run.layout import RunLayout

SCRIPT = "shared_prefix"
STAGES = (0, 1, 2, 3)


def train_from_stage(base: list[str], stage: int, paper_run, retrain: bool):
    """The run directory of delta specialists from ``stage`` (trained where missing)."""
    if stage == 0:
        return paper_run
    shared = {network: paper_run for network in ("vanilla", "generalist")
              if (paper_run / network).is_dir()}
    return common.variant_run(base, [f"deltas.from_stage={stage}"],
                              f"{paper_run.name}_from{stage}", shared, retrain)


def speed(system_dir, config, reps: dict) -> dict:
    """Hard and gated routing's batch-1 latency (per image, over 32 images) and batch-256
    throughput, and the base network's alone, on 256 of the run's validation images; each
    routing timed side by side with the base network (``*_x_*``: its time over the base
    network's in the same rounds)."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from supersub_tf.data.arrays import evaluation_images
    from supersub_tf.data.pipeline import normalize
    from supersub_tf.deltas.storage import load_system
    from supersub_tf.supersub.pipeline import SuperSubPipeline

    keras.backend.clear_session()
    system = load_system(system_dir)
    pipeline = SuperSubPipeline.from_system(system)
    pixels, _ = evaluation_images(config.data, count=256, seed=0)
    many = normalize(pixels, system.backbone.normalization).numpy()
    singles = [many[i:i + 1] for i in range(32)]
    alone = tf.function(lambda x: system.generalist(x, training=False), reduce_retracing=True)
    tau, k = config.deltas.gate_tau, config.deltas.topk
    result = {"boundary_tensors": len(pipeline._boundary),
              "shared_steps": len(pipeline._prefix), "replayed_steps": len(pipeline._suffix)}
    def base(b):
        return alone(b).numpy()

    for key, fn in (("supersub", lambda b: pipeline.predict(b, "hard")),
                    ("gated", lambda b: pipeline.predict(b, "gated", k=k, tau=tau))):
        b1, t1 = timed_side_by_side([lambda f=f: [f(x) for x in singles] for f in (base, fn)],
                                    reps["latency"], reps["warmup"])
        b256, t256 = timed_side_by_side([lambda f=f: f(many) for f in (base, fn)],
                                        reps["throughput"], reps["warmup"])
        result[f"{key}_ms_batch1"] = 1e3 * statistics.median(t1) / len(singles)
        result[f"{key}_ips_batch256"] = 256 / statistics.median(t256)
        result[f"{key}_x_batch1"] = statistics.median(t1) / statistics.median(b1)
        result[f"{key}_x_batch256"] = statistics.median(t256) / statistics.median(b256)
        result["base_ms_batch1"] = 1e3 * statistics.median(b1) / len(singles)
        result["base_ips_batch256"] = 256 / statistics.median(b256)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_variant_arguments(parser)
    parser.add_argument("--stages", type=int, nargs="+", default=list(STAGES),
                        help="from_stage values to train and compare (0: the main job's run)")
    args = parser.parse_args()
    started = time.perf_counter()
    base = common.run_overrides(args.small)
    info = common.ensure_run(base, retrain=args.retrain)
    paper_run = info["run_dir"]
    tag = bits_tag(info["config"].deltas.bits[0])
    vanilla = common.read_json(RunLayout(paper_run).metrics("vanilla"))["top1"]
    reps = {"latency": 3, "throughput": 3, "warmup": 1} if args.small else \
        {"latency": 7, "throughput": 9, "warmup": 2}
    rows = []
    for stage in args.stages:
        run_dir = train_from_stage(base, stage, paper_run, args.retrain)
        result = common.read_json(RunLayout(run_dir).supersub_result(tag))
        routing = result["routing"]
        rows.append({"from_stage": stage, "run_dir": str(run_dir), "vanilla_top1": vanilla,
                     "hard_top1": routing["hard"]["top1"], "topk_top1": routing["topk"]["top1"],
                     "soft_top1": routing.get("soft", {}).get("top1"),
                     "gated_top1": routing.get("gated", {}).get("top1"),
                     "gated_passes": routing.get("gated", {}).get("specialist_passes"),
                     "oracle_top1": routing["oracle"]["top1"],
                     "hard_minus_vanilla": routing["hard"]["top1"] - vanilla,
                     "storage_a": result["storage"]["a"],
                     "gated_curve": result.get("gated_curve", []),
                     **speed(RunLayout(run_dir).system(tag), info["config"], reps)})
    common.print_table(
        f"Delta specialists from stage s ({tag} deltas; vanilla top-1 {common.pct(vanilla)}; "
        "time over the base network alone at batch 1 and 256, timed side by side)",
        ["s", "hard", "top-2", "soft", "gated", "oracle", "hard-vanilla", "a", "shared",
         "hard b1 x", "hard b256 x", "gated b1 x", "gated b256 x", "base ms", "base img/s"],
        [[r["from_stage"], common.pct(r["hard_top1"]), common.pct(r["topk_top1"]),
          common.pct(r["soft_top1"]) if r["soft_top1"] is not None else "-",
          common.pct(r["gated_top1"]) if r["gated_top1"] is not None else "-",
          common.pct(r["oracle_top1"]), common.points(r["hard_minus_vanilla"]),
          f"{r['storage_a']:.3f}", r["shared_steps"], f"{r['supersub_x_batch1']:.2f}",
          f"{r['supersub_x_batch256']:.2f}", f"{r['gated_x_batch1']:.2f}",
          f"{r['gated_x_batch256']:.2f}", f"{r['base_ms_batch1']:.2f}",
          f"{r['base_ips_batch256']:,.0f}"] for r in rows])
    path = common.write_result(SCRIPT, common.mode_name(args.small), {"rows": rows},
                               started, args.output)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
