"""The Super-Sub pipeline on the CPU: cost of each routing beside its accuracy, the swap,
delta training.

Measures, with ``time.perf_counter`` after warm-up calls, as medians over repetitions:

* **inference**: one network (the system's stage 1: the vanilla network for a system on
  the vanilla base, else a vanilla-size network and the generalist) against Super-Sub
  under every inference routing (hard, top-k, soft, and gated at several thresholds
  ``--taus`` plus the run's ``deltas.gate_tau``), each **in process**
  (``SuperSubPipeline.predict``), **as the SavedModel** (exported with that routing,
  uint8 input) and, with ``--tflite``, **through the LiteRT runtime**; at batch 1 (one
  call per image over 32 different images: gated routing's cost depends on the image)
  and batch 256. Each row has the specialist passes per image it made, its top-1 on the
  run's whole validation split (``supersub/<bits>.json``, its routing table and gated
  curve) and its time as a multiple of one network in process, the two timed side by
  side (alternating calls in the same rounds, so the machine's drift between rows does
  not enter the ratio). Gated routing with a
  vanilla stage 1 at ``tau = 0`` is stage 1 alone in that form. The default routing
  (gated at ``deltas.gate_tau``) is checked against issue 21's targets: at most 2.0x one
  network at batch 1 and 1.5x at batch 256;
* **swap**: ``apply`` of one specialist's deltas and ``restore`` of the base network
  (ms, mean over many swaps, cycling through the specialists);
* **training**: images/s of ``train_on_batch`` at batch 128 for the plain network, a
  float delta specialist and a QAT delta specialist of the same backbone;
* **weights resident**: bytes of the pipeline (one trunk's variables, plus host copies
  of the weights specialists change and the delta sets) against the base network plus N
  separate specialist networks; of those, the variables a device holds (one network's:
  the trunk and stage 1's head; a specialist's head and deltas are sent in per call) as a
  fraction of one network.

Which system (as the other question benchmarks, see ``benchmarks/common.py``):

* full mode (default): the trained ``--bits`` system of the default run,
  ``runs/default/systems/8bit``, training or resuming the run when it lacks it;
* ``--small``: fewer repetitions, on the quick-profile run ``bench_small``'s system
  (trained in minutes when absent; its backbone is the quick profile's resnet8 x0.25);
* ``--run DIR``: ``DIR/systems/<bits>`` of an existing run (never trains);
  ``--system DIR``: a saved system directory;
* ``--untrained``: no run at all: a ``create_model`` generalist of ``--model``,
  ``--width``, ``--image-size`` over ``--preset``'s superclasses and, per superclass, a
  delta specialist (``build_delta_specialist``) whose deltas are set to small random
  values and read out with ``extract_delta_set`` at ``--bits`` bits, so the layer layout
  is that of a trained system. An untrained generalist routes random images unevenly.

The images are 256 validation images of the system's run (random pixels for a system
outside a run and for ``--untrained``), so routing spreads over the superclasses as in
use.

    python benchmarks/supersub_pipeline.py --system runs/default/systems/4bit \
        --tflite saved_models/default_tflite    # the default system, all three forms
    python benchmarks/supersub_pipeline.py --small         # bench_small's system, fewer repetitions
    python benchmarks/supersub_pipeline.py --untrained     # resnet20 x0.5, 32x32, random deltas

Prints a table and writes JSON to ``benchmarks/results/supersub_pipeline_<mode>.json``
(mode ``full`` or ``small``, with ``_untrained`` for an untrained system).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import common  # also selects tf_keras and oneDNN before TensorFlow loads
from supersub_tf.config import bits_tag, parse_bits
from supersub_tf.errors import ConfigError
from supersub_tf.analysis.costs import timed_calls, timed_side_by_side
from supersub_tf.run.layout import RunLayout

SCRIPT = "supersub_pipeline"


def untrained_system(args: argparse.Namespace):
    """An untrained generalist and random ``args.bits``-bit delta sets of the real layout."""
    import numpy as np
    import tf_keras as keras

    from supersub_tf.deltas.backbone import Backbone
    from supersub_tf.deltas.specialist import (
        build_delta_specialist, extract_delta_set, iter_delta_layers)
    from supersub_tf.models import create_model
    from supersub_tf.presets import load_preset

    hierarchy = load_preset(args.preset)
    keras.utils.set_random_seed(args.seed)
    size = args.image_size
    generalist = create_model(args.model, hierarchy.num_superclasses, (size, size, 3),
                              width=args.width)
    rng = np.random.default_rng(args.seed)
    delta_sets = {}
    for name in hierarchy.superclass_names:
        specialist = build_delta_specialist(generalist, hierarchy.num_subclasses(name),
                                            bits=None)
        for _, layer in iter_delta_layers(specialist):
            base = layer.base_kernel.numpy()
            layer.delta.assign(rng.normal(0.0, 0.05 * base.std(), base.shape).astype("float32"))
        delta_sets[name] = extract_delta_set(specialist, name, args.bits)
    backbone = Backbone(model=args.model, width=args.width, image_size=size)
    settings = {"bits": args.bits, "from_stage": 0, "train_batchnorm": True}
    return generalist, delta_sets, hierarchy, backbone, settings


def validation_pixels(system: str | None, size: int, rng) -> tuple:
    """256 uint8 images to time on: a seeded sample of the run's validation images when
    the system lies in a run (``<run>/systems/<bits>``), so hard routing spreads over the
    superclasses as it does in use; random pixels otherwise."""
    import numpy as np

    from supersub_tf.config import load_config
    from supersub_tf.data.arrays import evaluation_images

    run_config = RunLayout(Path(system).resolve().parents[1]).config if system else None
    if run_config is not None and run_config.is_file():
        config = load_config(run_config)
        images, _ = evaluation_images(config.data, count=256, seed=0)
        if len(images) == 256 and images.shape[1] == size:
            return images[rng.permutation(256)], f"256 validation images of {run_config.parent}"
    return (rng.integers(0, 256, (256, size, size, 3), dtype=np.uint8),
            "256 random images (no run beside the system)")


def nbytes(arrays) -> int:
    return int(sum(a.nbytes for a in arrays))


def resident_bytes(pipeline, generalist, delta_sets) -> dict:
    """Bytes in memory: the pipeline against the generalist plus N separate specialists."""
    trunk = nbytes(w.numpy() for w in pipeline.trunk.weights)
    generalist_head = nbytes(w.numpy() for w in generalist.get_layer("logits").weights)
    # Layers a specialist changes (deltas, owned batch norms): the pipeline keeps host
    # copies of their generalist weights to restore them exactly.
    touched = {name for d in delta_sets.values() for name in [*d.deltas, *d.owned]
               if name != "logits"}
    host_copies = nbytes(w.numpy() for name in touched
                         for w in pipeline.trunk.get_layer(name).weights)
    deltas = sum(nbytes([q.codes] + ([q.scales] if q.scales is not None else []))
                 for d in delta_sets.values() for q in d.deltas.values())
    owned = sum(nbytes(w) for d in delta_sets.values() for w in d.owned.values())
    heads = [nbytes(d.owned["logits"]) for d in delta_sets.values()]
    pipeline_total = trunk + generalist_head + host_copies + deltas + owned
    separate = (trunk + generalist_head) + sum(trunk + h for h in heads)
    # On a device one network's variables live: the trunk and stage 1's head (a
    # specialist's deltas, batch norms and head are sent in with each call).
    device = nbytes(v.numpy() for v in pipeline.resident_variables)
    return {"trunk_variables": trunk, "generalist_head": generalist_head,
            "device_variables": device, "one_network": trunk + generalist_head,
            "device_variables_in_networks": device / (trunk + generalist_head),
            "pipeline_variables": trunk + generalist_head,
            "pipeline_host_copies": host_copies, "pipeline_delta_sets": deltas + owned,
            "pipeline_total": pipeline_total,
            "separate_networks_total": separate, "separate_networks": len(heads) + 1,
            "separate_over_pipeline": separate / pipeline_total}


def label_of(routing: str, tau: float | None) -> str:
    """A routing's name in the tables (``gated, tau 0.50``)."""
    return f"{routing} routing" if tau is None else f"{routing} routing, tau {tau:.2f}"


def recorded_accuracy(system: str | None) -> dict[tuple[str, float | None], float]:
    """Top-1 on the whole validation split of each routing (and each point of the gated
    curve) as the run recorded it (``<run>/supersub/<bits>.json``), keyed by
    ``(routing, tau)``; empty for a system outside a run."""
    if not system:
        return {}
    record = RunLayout(Path(system).resolve().parents[1]).supersub_result(Path(system).name)
    if not record.is_file():
        return {}
    result = common.read_json(record)
    found = {(r, None): v["top1"] for r, v in result["routing"].items() if r != "gated"}
    found.update({("gated", round(p["tau"], 2)): p["top1"] for p in result["gated_curve"]})
    return found


def routing_settings(system: str | None) -> tuple[int, float]:
    """``(k, tau)`` of the system's run (``deltas.topk``, ``deltas.gate_tau``), else the
    config's defaults."""
    from supersub_tf.config import DeltaConfig, load_config

    run_config = RunLayout(Path(system).resolve().parents[1]).config if system else None
    deltas = (load_config(run_config).deltas if run_config and run_config.is_file()
              else DeltaConfig())
    return deltas.topk, round(float(deltas.gate_tau), 2)


def exported_signature(system, routing: str, k: int, tau: float):
    """The ``serving_default`` signature of ``system`` exported with ``routing`` (a
    temporary SavedModel, loaded back)."""
    import tempfile

    import tensorflow as tf

    from supersub_tf.export.savedmodel import SIGNATURE, export_savedmodel

    with tempfile.TemporaryDirectory() as tmp:
        export_savedmodel(system, Path(tmp) / "savedmodel", check=False, routing=routing,
                          k=k, tau=tau)
        loaded = tf.saved_model.load(str(Path(tmp) / "savedmodel"))
    serve = loaded.signatures[SIGNATURE]
    serve._keep = loaded  # the signature needs its object alive
    return serve


def bits_arg(value: str) -> int | None:
    try:
        return parse_bits(value)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_run_arguments(parser, "fewer repetitions, on the system of the run")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--system", help="a saved system directory")
    source.add_argument("--untrained", action="store_true",
                        help="an untrained system of --model, --width, --image-size, --preset")
    parser.add_argument("--model", default="resnet20", help="backbone of --untrained")
    parser.add_argument("--width", type=float, default=0.5, help="width of --untrained")
    parser.add_argument("--image-size", type=int, default=32, help="image side of --untrained")
    parser.add_argument("--preset", default="tiny_imagenet_10",
                        help="hierarchy of --untrained (superclasses, subclasses)")
    parser.add_argument("--bits", type=bits_arg, default=8,
                        help="which system of the run (8: systems/8bit; float allowed), the "
                             "delta bits of --untrained, and of the QAT training row")
    parser.add_argument("--taus", type=float, nargs="*", default=[0.0, 0.3, 0.5, 0.7, 0.9],
                        help="gated routing's thresholds to time (the run's deltas.gate_tau "
                             "is always added; 0 = stage 1 alone)")
    parser.add_argument("--tflite", help="a LiteRT export of the same system to time "
                                         "through its runtime (e.g. saved_models/default_tflite)")
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.system and args.run:
        parser.error("--system names the system; it goes without --run")
    if args.untrained and args.run:
        parser.error("--untrained builds its own system; it goes without --run")
    start_all = time.perf_counter()
    run = None
    if not (args.system or args.untrained):
        info = common.ensure_run(common.run_overrides(args.small, [
            f"deltas.bits=[{'float' if args.bits is None else args.bits}]"]),
            run=args.run, wait=args.wait, retrain=args.retrain)
        run = common.run_summary(info)
        args.system = str(RunLayout(info["run_dir"]).system(bits_tag(args.bits)))

    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from supersub_tf.config import TrainConfig
    from supersub_tf.deltas.specialist import build_delta_specialist
    from supersub_tf.deltas.storage import SuperSubSystem, load_system
    from supersub_tf.export.tflite import open_export
    from supersub_tf.models import create_model
    from supersub_tf.supersub.routing import INFERENCE_ROUTINGS, routes_for, specialist_passes
    from supersub_tf.supersub.pipeline import SuperSubPipeline
    from supersub_tf.training.engine import compile_model

    reps = {"latency": 3, "singles": 16, "throughput": 4, "swap": 30, "train": 6, "warmup": 1} \
        if args.small else {"latency": 7, "singles": 32, "throughput": 11, "swap": 200,
                            "train": 20, "warmup": 2}
    if args.system:
        system = load_system(args.system)
        generalist, delta_sets, hierarchy = system.generalist, system.delta_sets, system.hierarchy
        backbone, settings = system.backbone, system.delta_settings
    else:
        generalist, delta_sets, hierarchy, backbone, settings = untrained_system(args)
        system = SuperSubSystem(Path("untrained"), hierarchy, backbone, dict(settings),
                                generalist, delta_sets)
    size, model_name, width = backbone.image_size, backbone.model, backbone.width
    n_super, n_fine = hierarchy.num_superclasses, hierarchy.num_classes
    bits = settings.get("bits")
    label = (f"{model_name} x{width}, {size}x{size}, {n_super} superclasses ({n_fine} classes), "
             f"{'float' if bits is None else f'{bits}-bit'} deltas, "
             f"{'system ' + args.system if args.system else 'untrained'}")
    print(f"Super-Sub pipeline benchmark: {label}", flush=True)

    rng = np.random.default_rng(args.seed)
    pixels, images_from = validation_pixels(args.system, size, rng)
    from supersub_tf.data.pipeline import normalize

    normalized = normalize(pixels, backbone.normalization)
    batch_1, batch_256 = normalized[:1], normalized
    balanced = np.arange(256) % n_super
    print(f"images: {images_from}", flush=True)

    # ------------------------------------------------------------------ inference
    # Every inference routing, in process, as the SavedModel and through the LiteRT
    # runtime, each row with its accuracy (the run's record on the whole validation split)
    # beside its cost as a multiple of one network's time. Batch-1 rows time one call per
    # image over ``singles`` different images (gated routing's cost depends on the
    # image), batch-256 rows the 256 images at once.
    vanilla = create_model(model_name, n_fine, (size, size, 3), width=width)
    pipeline = SuperSubPipeline.from_system(system)
    stage_one_fine = system.stage_one_head == "fine"
    one_network = ("vanilla network alone (stage 1)" if stage_one_fine
                   else f"vanilla-size network ({n_fine} classes), one pass")
    accuracy = recorded_accuracy(args.system)
    k, default_tau = routing_settings(args.system)
    taus = sorted({*args.taus, default_tau})
    variants = [(r, None) for r in INFERENCE_ROUTINGS if r != "gated"] + [
        ("gated", t) for t in taus]
    singles = reps["singles"]
    inference = []

    def row(form, name, routing, tau, batch, seconds, passes, over_one):
        return {"form": form, "network": name, "routing": routing, "tau": tau, "batch": batch,
                "median_ms": 1e3 * seconds, "images_per_second": batch / seconds,
                "specialist_passes": passes,
                "top1": accuracy.get((routing, tau)) if routing else None,
                "time_over_one_network": over_one}

    def time_both(form, name, routing, tau, call, passes_of):
        """Batch 1 (per image, over ``singles`` images) and batch 256, each side by side
        with one network in process (the ratio's two medians come from the same rounds)."""
        for batch in (1, 256):
            chunks = [slice(i, i + 1) for i in range(singles)] if batch == 1 else [slice(None)]

            def over(fn, chunks=chunks):
                return lambda: [fn(pixels[c], normalized[c]) for c in chunks]

            one, this = timed_side_by_side(
                [over(one_network_call), over(call)],
                reps["latency"] if batch == 1 else reps["throughput"], reps["warmup"])
            inference.append(row(form, name, routing, tau, batch,
                                 statistics.median(this) / len(chunks),
                                 passes_of(singles if batch == 1 else 256),
                                 statistics.median(this) / statistics.median(one)))

    def passes(routing, tau):
        def of(n):
            sup, fine, _ = pipeline.stage_one(normalized[:n])
            return specialist_passes(routes_for(sup, routing, k,
                                                tau=0.5 if tau is None else tau,
                                                stage_one_fine=fine))
        return of

    keras_calls = {name: tf.function(lambda x, m=model: m(x, training=False),
                                     reduce_retracing=True)
                   for name, model in ((one_network, generalist if stage_one_fine else vanilla),
                                       *(() if stage_one_fine else
                                         ((f"generalist alone ({n_super} superclasses)",
                                           generalist),)))}

    def one_network_call(px, x):
        return keras_calls[one_network](x).numpy()

    for name, call in keras_calls.items():
        time_both("in process", name, None, None, lambda px, x, c=call: c(x).numpy(),
                  lambda n: 0.0)
    for routing, tau in variants:
        time_both("in process", f"Super-Sub, {label_of(routing, tau)}", routing, tau,
                  lambda px, x, r=routing, t=tau: pipeline.predict(
                      x, r, k=k, tau=t if t is not None else 0.5),
                  passes(routing, tau))
    print("in-process inference done", flush=True)
    for routing, tau in variants:
        serve = exported_signature(system, routing, k, tau if tau is not None else 0.5)
        time_both("SavedModel", f"SavedModel, {label_of(routing, tau)}", routing, tau,
                  lambda px, x, f=serve: f(images=tf.constant(px))["fine"].numpy(),
                  passes(routing, tau))
    print("SavedModel inference done", flush=True)
    if args.tflite:
        runtime = open_export(args.tflite)
        for routing, tau in variants:
            time_both("LiteRT", f"LiteRT, {label_of(routing, tau)}", routing, tau,
                      lambda px, x, r=routing, t=tau: runtime.predict(
                          px, routing=r, k=k, tau=t if t is not None else 0.5),
                      passes(routing, tau))
        print("LiteRT inference done", flush=True)

    # ------------------------------------------------------------------ swap
    names = hierarchy.superclass_names
    apply_t, restore_t = [], []
    for i in range(reps["swap"] + reps["warmup"]):
        t0 = time.perf_counter()
        pipeline.apply(names[i % len(names)])
        t1 = time.perf_counter()
        pipeline.restore()
        t2 = time.perf_counter()
        if i >= reps["warmup"]:
            apply_t.append(t1 - t0)
            restore_t.append(t2 - t1)
    if not pipeline.generalist_weights_equal():
        raise SystemExit("restore did not bring the generalist's weights back bit for bit")
    both = [a + r for a, r in zip(apply_t, restore_t)]
    swap = {"swaps": len(both), **{f"{key}_mean_ms": 1e3 * statistics.fmean(v)
                                   for key, v in (("apply", apply_t), ("restore", restore_t),
                                                  ("apply_restore", both))},
            "apply_restore_median_ms": 1e3 * statistics.median(both)}
    resident = resident_bytes(pipeline, generalist, delta_sets)

    # ------------------------------------------------------------------ training
    n_sub = hierarchy.num_subclasses(names[0])
    train_cfg = TrainConfig(model=model_name, width=width, batch_size=args.train_batch)
    qat_bits = next(b for b in (bits, args.bits, 8) if b is not None)
    x = rng.normal(size=(args.train_batch, size, size, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(args.train_batch) % n_sub, n_sub)
    training = []
    for name, build in (
            ("plain network", lambda: create_model(model_name, n_sub, (size, size, 3),
                                                   width=width)),
            ("float delta specialist", lambda: build_delta_specialist(generalist, n_sub,
                                                                      bits=None)),
            (f"{qat_bits}-bit QAT delta specialist",
             lambda: build_delta_specialist(generalist, n_sub, bits=qat_bits))):
        model = build()
        compile_model(model, train_cfg, steps_per_epoch=100)
        t = timed_calls(lambda m=model: m.train_on_batch(x, y), reps["train"], reps["warmup"])
        training.append({"network": name, "batch": args.train_batch, "steps": len(t),
                         "median_step_ms": 1e3 * statistics.median(t),
                         "images_per_second": args.train_batch / statistics.median(t)})
        print(f"training {name} done", flush=True)
    for row in training:
        row["relative_to_plain"] = row["images_per_second"] / training[0]["images_per_second"]

    # ------------------------------------------------------------------ report
    one = {r["batch"]: r["median_ms"] for r in inference
           if r["form"] == "in process" and r["network"] == one_network}
    table = {}
    for r in inference:
        table.setdefault((r["form"], r["network"]), {})[r["batch"]] = r
    common.print_table(
        f"Inference: time per image as a multiple of {one_network} in process "
        f"({one[1]:.2f} ms at batch 1, {one[256] / 256:.3f} ms per image at batch 256); "
        "top-1 on the run's whole validation split",
        ["form", "system, routing", "top-1", "passes", "b1 ms", "b1 x", "b256 ms", "b256 x"],
        [[form, name.split(", ", 1)[-1] if name != one_network else name,
          common.pct(b[1]["top1"]) if b[1]["top1"] is not None else "-",
          f"{b[256]['specialist_passes']:.2f}" if b[256]["routing"] else "-",
          f"{b[1]['median_ms']:.2f}", f"{b[1]['time_over_one_network']:.2f}",
          f"{b[256]['median_ms']:.1f}", f"{b[256]['time_over_one_network']:.2f}"]
         for (form, name), b in table.items()])
    targets = {}
    for form in ("in process", "SavedModel", "LiteRT"):
        rows = [r for r in inference if r["form"] == form and r["routing"] == "gated"
                and r["tau"] == default_tau]
        if rows:
            got = {r["batch"]: r["time_over_one_network"] for r in rows}
            targets[form] = {"routing": "gated", "tau": default_tau, "top1": rows[0]["top1"],
                             "batch1_x": got[1], "batch256_x": got[256],
                             "within_targets": got[1] <= 2.0 and got[256] <= 1.5}
            print(f"default routing (gated, tau {default_tau:.2f}), {form}: {got[1]:.2f}x at "
                  f"batch 1 (target <= 2.0x), {got[256]:.2f}x at batch 256 (target <= 1.5x)")
    ratios = {f"{form}_{r['routing']}_{r['tau']}_batch{r['batch']}": r["time_over_one_network"]
              for r in inference if r["routing"] for form in [r["form"]]}
    print()
    print(f"swap of one specialist ({swap['swaps']} swaps): apply {swap['apply_mean_ms']:.2f} ms, "
          f"restore {swap['restore_mean_ms']:.2f} ms, apply + restore "
          f"{swap['apply_restore_mean_ms']:.2f} ms mean "
          f"({swap['apply_restore_median_ms']:.2f} ms median)")
    print()
    print(f"{'training, train_on_batch':58s} {'batch':>5s} {'step ms':>10s} {'images/s':>10s} "
          f"{'vs plain':>11s}")
    for r in training:
        print(f"{r['network']:58s} {r['batch']:5d} {r['median_step_ms']:10.1f} "
              f"{r['images_per_second']:10.1f} {r['relative_to_plain']:11.2f}")
    print()
    print("weights resident (bytes)")
    print(f"  pipeline: trunk + generalist head variables {resident['pipeline_variables']:,}, "
          f"host copies of changed layers {resident['pipeline_host_copies']:,}, "
          f"delta sets {resident['pipeline_delta_sets']:,}; total {resident['pipeline_total']:,}")
    print(f"  generalist + {resident['separate_networks'] - 1} separate specialists: "
          f"{resident['separate_networks_total']:,} "
          f"({resident['separate_over_pipeline']:.1f}x the pipeline)")
    print(f"  device-resident variables of the pipeline: the trunk's and stage 1's head, "
          f"{resident['device_variables']:,} bytes = "
          f"{resident['device_variables_in_networks']:.2f} of one network "
          f"({resident['one_network']:,}); host copies, deltas and the specialists' heads "
          "stay in host memory")

    result = {
        "system": args.system, "trained": not args.untrained, "run": run,
        "backbone": {"model": model_name, "width": width, "image_size": size},
        "num_superclasses": n_super, "num_classes": n_fine, "delta_settings": settings,
        "small": args.small, "repetitions": reps,
        "images": images_from, "k": k, "default_tau": default_tau, "tflite": args.tflite,
        "inference": inference, "time_over_one_network": ratios,
        "default_routing_targets": targets, "swap": swap, "training": training,
        "resident_bytes": resident,
    }
    mode = common.mode_name(args.small, "untrained" if args.untrained else "")
    path = common.write_result(SCRIPT, mode, result, start_all, args.output)
    print(f"\nwrote {path} ({time.perf_counter() - start_all:.0f} s)")


if __name__ == "__main__":
    main()
