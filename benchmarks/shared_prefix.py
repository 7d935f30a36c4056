"""Issue 12's shared prefix: accuracy, storage and speed of delta specialists from stage s.

With ``deltas.from_stage = s`` the specialists adapt only trunk stages ``>= s``, so the
stem and stages ``< s`` are the generalist's for every specialist: the pipeline runs
them once per batch (in stage 1) and starts stage 2 from their output. This script
trains 4-bit delta specialists at s = 0, 1, 2 on the main job's generalist (each ``s``
is a run of its own, ``runs/<name>_from<s>``, with the main job's vanilla network and
generalist copied in, so only the delta specialists train; s = 0 is the main job's own
run) and puts, side by side, in one process:

* accuracy: Super-Sub top-1 under hard and top-2 routing, oracle, minus vanilla;
* storage: ``a`` of ``a * N + 1`` networks;
* speed: hard routing's median latency at batch 1 and throughput at batch 256 (on
  validation-sized random images), against the generalist alone.

    python benchmarks/shared_prefix.py            # the main job's recipe (~15 min CPU)
    python benchmarks/shared_prefix.py --small    # the quick profile (minutes)

Writes ``benchmarks/results/shared_prefix_<mode>.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import common

from supersub_tf.analysis.costs import timed_calls
from supersub_tf.config import bits_tag

SCRIPT = "shared_prefix"
STAGES = (0, 1, 2)


def train_from_stage(base: list[str], stage: int, paper_run, retrain: bool):
    """The run directory of delta specialists from ``stage`` (trained where missing)."""
    if stage == 0:
        return paper_run
    return common.variant_run(base, [f"deltas.from_stage={stage}"],
                              f"{paper_run.name}_from{stage}",
                              {"vanilla": paper_run, "generalist": paper_run}, retrain)


def speed(system_dir, reps: dict) -> dict:
    """Hard routing's batch-1 latency and batch-256 throughput, and the generalist's."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from supersub_tf.deltas.storage import load_system
    from supersub_tf.supersub.pipeline import SuperSubPipeline

    keras.backend.clear_session()
    system = load_system(system_dir)
    size = system.backbone.image_size
    pipeline = SuperSubPipeline.from_system(system)
    rng = np.random.default_rng(0)
    one = tf.constant(rng.normal(size=(1, size, size, 3)).astype("float32"))
    many = tf.constant(rng.normal(size=(256, size, size, 3)).astype("float32"))
    alone = tf.function(lambda x: system.generalist(x, training=False), reduce_retracing=True)
    result = {"boundary_tensors": len(pipeline._boundary),
              "shared_steps": len(pipeline._prefix), "replayed_steps": len(pipeline._suffix)}
    for key, fn in (("supersub", lambda b: pipeline.predict(b, "hard")),
                    ("generalist", lambda b: alone(b).numpy())):
        t1 = timed_calls(lambda: fn(one), reps["latency"], reps["warmup"])
        t256 = timed_calls(lambda: fn(many), reps["throughput"], reps["warmup"])
        result[f"{key}_ms_batch1"] = 1e3 * statistics.median(t1)
        result[f"{key}_ips_batch256"] = 256 / statistics.median(t256)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_variant_arguments(parser)
    args = parser.parse_args()
    started = time.perf_counter()
    base = common.run_overrides(args.small)
    info = common.ensure_run(base, retrain=args.retrain)
    paper_run = info["run_dir"]
    tag = bits_tag(info["config"].deltas.bits[0])
    vanilla = common.read_json(paper_run / "vanilla" / "metrics.json")["top1"]
    reps = {"latency": 30, "throughput": 3, "warmup": 2} if args.small else \
        {"latency": 100, "throughput": 8, "warmup": 3}
    rows = []
    for stage in STAGES:
        run_dir = train_from_stage(base, stage, paper_run, args.retrain)
        result = common.read_json(run_dir / "supersub" / f"{tag}.json")
        routing = result["routing"]
        rows.append({"from_stage": stage, "run_dir": str(run_dir), "vanilla_top1": vanilla,
                     "hard_top1": routing["hard"]["top1"], "topk_top1": routing["topk"]["top1"],
                     "oracle_top1": routing["oracle"]["top1"],
                     "hard_minus_vanilla": routing["hard"]["top1"] - vanilla,
                     "storage_a": result["storage"]["a"],
                     **speed(run_dir / "systems" / tag, reps)})
    common.print_table(
        f"Delta specialists from stage s ({tag} deltas; vanilla top-1 {common.pct(vanilla)})",
        ["s", "hard", "top-2", "oracle", "hard-vanilla", "a", "shared steps",
         "ms batch 1", "img/s batch 256", "generalist ms", "generalist img/s"],
        [[r["from_stage"], common.pct(r["hard_top1"]), common.pct(r["topk_top1"]),
          common.pct(r["oracle_top1"]), common.points(r["hard_minus_vanilla"]),
          f"{r['storage_a']:.3f}", r["shared_steps"], f"{r['supersub_ms_batch1']:.2f}",
          f"{r['supersub_ips_batch256']:,.0f}", f"{r['generalist_ms_batch1']:.2f}",
          f"{r['generalist_ips_batch256']:,.0f}"] for r in rows])
    path = common.write_result(SCRIPT, common.mode_name(args.small), {"rows": rows},
                               started, args.output)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
