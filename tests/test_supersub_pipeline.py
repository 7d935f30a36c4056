"""The two-stage pipeline: routing on known probabilities, exact restore of the
generalist's weights, and agreement with separately built specialists."""

import numpy as np
import pytest

from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass
from supersub_tf.supersub.pipeline import SuperSubPipeline

TOY = Hierarchy([Superclass("a", (Subclass("a0", "a0"), Subclass("a1", "a1"))),
                 Superclass("b", (Subclass("b0", "b0"), Subclass("b1", "b1"),
                                  Subclass("b2", "b2")))], name="toy")

# Stage 1 and stage 2 probabilities of three images, chosen so routing modes differ.
SUPER = np.array([[0.6, 0.4], [0.45, 0.55], [0.1, 0.9]], np.float32)
SUB = {"a": np.array([[0.55, 0.45], [0.4, 0.6], [0.2, 0.8]], np.float32),
       "b": np.array([[0.9, 0.05, 0.05], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8]], np.float32)}


class KnownProbabilities(SuperSubPipeline):
    """The pipeline's routing and combination logic over fixed stage outputs."""

    def __init__(self):
        self.hierarchy = TOY
        self.delta_sets = {}

    def shared_tensors(self, images):
        return [images]

    def stage_one(self, images):
        return self.superclass_probs(images), None, self.shared_tensors(images)

    def superclass_probs(self, images):
        return SUPER[np.asarray(images, int).ravel()]

    def specialist_probs(self, images, superclass, shared=None):
        # stage 2 starts from stage 1's shared tensors (here the image indices)
        rows = images if shared is None else shared[0]
        return SUB[superclass][np.asarray(rows, int).ravel()], None


def test_routing_modes_on_known_probabilities():
    pipeline = KnownProbabilities()
    images = np.arange(3).reshape(3, 1)
    hard = pipeline.predict(images, "hard")
    # image 0 -> a (0.6): a0 (0.55); image 1 -> b: b2; image 2 -> b: b2.
    assert hard.fine.tolist() == [0, 4, 4]
    assert hard.fine_prob[0] == pytest.approx(0.6 * 0.55)
    assert hard.subclass_prob[1] == pytest.approx(0.4)
    top2 = pipeline.predict(images, "topk", k=2)
    # image 0: a0 0.33 < b0 0.36; image 1: a1 0.27 > b2 0.22 (hard routing sent it to b).
    assert top2.fine.tolist() == [2, 1, 4]
    assert top2.fine_probs[0].sum() == pytest.approx(0.6 + 0.4)
    oracle = pipeline.predict(images, "oracle", true_superclass=np.array([0, 0, 1]))
    assert oracle.fine.tolist() == [0, 1, 4]
    assert oracle.superclass.tolist() == [0, 0, 1] and oracle.subclass.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="oracle routing needs"):
        pipeline.predict(images, "oracle")
    with pytest.raises(ValueError, match="routing must be"):
        pipeline.predict(images, "mixed")


@pytest.fixture(scope="module")
def tiny_system():
    """A generalist and 4-bit delta specialists, a few steps trained on random data."""
    import tf_keras as keras

    from supersub_tf.deltas.specialist import build_delta_specialist, extract_delta_set
    from supersub_tf.models import create_model

    keras.utils.set_random_seed(0)
    generalist = create_model("resnet8", 2, (16, 16, 3), width=0.25)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 16, 16, 3)).astype(np.float32)
    generalist.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    generalist.fit(x, rng.integers(0, 2, 32), epochs=1, verbose=0)
    delta_sets, specialists = {}, {}
    for s, name in enumerate(TOY.superclass_names):
        n = TOY.num_subclasses(name)
        model = build_delta_specialist(generalist, n, bits=4)
        model.compile(keras.optimizers.SGD(0.05),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, rng.integers(0, n, 32), epochs=2, verbose=0)
        delta_sets[name] = extract_delta_set(model, name, 4)
        specialists[name] = model
    return generalist, delta_sets, specialists, x


def test_generalist_weights_restored_bit_for_bit(tiny_system):
    generalist, delta_sets, _, x = tiny_system
    before = [w.numpy().copy() for w in generalist.weights]
    pipeline = SuperSubPipeline(generalist, delta_sets, TOY)
    pipeline.apply("b")
    assert not pipeline.generalist_weights_equal()
    pipeline.restore()
    pipeline.predict(x[:8], "topk", k=2)
    assert pipeline.generalist_weights_equal()
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, generalist.weights))


def test_pipeline_equals_separate_specialists(tiny_system):
    from supersub_tf.deltas.specialist import materialize

    generalist, delta_sets, specialists, x = tiny_system
    pipeline = SuperSubPipeline(generalist, delta_sets, TOY)
    for name in TOY.superclass_names:
        in_place = pipeline.subclass_probs(x, name)
        separate = materialize(generalist, delta_sets[name])(x, training=False).numpy()
        qat = specialists[name](x, training=False).numpy()
        softmax = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(  # noqa: E731
            z - z.max(1, keepdims=True)).sum(1, keepdims=True)
        np.testing.assert_allclose(in_place, softmax(separate), atol=1e-5)
        np.testing.assert_allclose(in_place, softmax(qat), atol=1e-4)
    stage1 = pipeline.superclass_probs(x)
    logits = generalist(x, training=False).numpy()
    np.testing.assert_allclose(stage1.argmax(1), logits.argmax(1))


def test_missing_specialist_is_an_error(tiny_system):
    generalist, delta_sets, _, _ = tiny_system
    with pytest.raises(ValueError, match="no specialist deltas for superclass"):
        SuperSubPipeline(generalist, {"a": delta_sets["a"]}, TOY)


@pytest.mark.parametrize("routing, calls", [("hard", {"a": [0], "b": [1, 2]}),
                                             ("topk", {"a": [0, 1, 2], "b": [0, 1, 2]}),
                                             ("soft", {"a": [0, 1, 2], "b": [0, 1, 2]}),
                                             ("gated", {"a": [0, 1], "b": [0, 1, 2]})])
def test_predict_runs_each_specialist_once_per_batch_on_its_routed_images(routing, calls):
    """Stage 2 batches by specialist: one call per specialist that got images, on exactly
    those images, however many specialists each image goes to (top-k, soft); gated's
    confident image (2: p(b) = 0.9 >= tau; a generalist stage 1 routes it hard) goes to b
    alone and no specialist runs twice."""
    seen: dict[str, list[list[int]]] = {}

    class Counting(KnownProbabilities):
        def specialist_probs(self, images, superclass, shared=None):
            seen.setdefault(superclass, []).append(np.asarray(shared[0], int).ravel().tolist())
            return super().specialist_probs(images, superclass, shared)

    Counting().predict(np.arange(3).reshape(3, 1), routing, k=2, tau=0.8)
    assert seen == {name: [rows] for name, rows in calls.items()}


def test_evaluation_runs_stage_one_once_per_batch_for_every_routing():
    from supersub_tf.supersub.evaluate import collect_predictions
    from supersub_tf.supersub.routing import ALL_ROUTINGS

    class Counting(KnownProbabilities):
        stage1_calls = 0
        stage2_calls = 0

        def superclass_probs(self, images):
            Counting.stage1_calls += 1
            return super().superclass_probs(images)

        def specialist_probs(self, images, superclass, shared=None):
            Counting.stage2_calls += 1
            return super().specialist_probs(images, superclass, shared)

    import tensorflow as tf

    pipeline = Counting()
    truth = np.array([0, 1, 1])
    images = np.arange(3).reshape(3, 1)
    dataset = tf.data.Dataset.from_tensors(
        (images, {"superclass": truth, "fine": np.array([1, 4, 4]),
                  "subclass": np.array([1, 2, 2])}))
    probs, labels = collect_predictions(pipeline, dataset, ALL_ROUTINGS, k=2, tau=0.58)
    assert Counting.stage1_calls == 1 and Counting.stage2_calls == 2  # a, b once each
    for routing in ALL_ROUTINGS:
        expected = KnownProbabilities().predict(images, routing, k=2, true_superclass=truth,
                                                tau=0.58).fine_probs
        np.testing.assert_allclose(probs[routing], expected, atol=1e-7)
    assert float(probs["gated_passes"]) == pytest.approx(4 / 3)  # only image 1 is unsure


def test_stage_two_never_writes_the_trunk_and_a_failed_swap_restores_it(tiny_system):
    import dataclasses

    from supersub_tf.deltas.delta_set import QuantizedTensor

    generalist, delta_sets, _, x = tiny_system
    pipeline = SuperSubPipeline(generalist, delta_sets, TOY)
    before = [w.numpy().copy() for w in pipeline.trunk.weights]
    # The replay reads the variables and never assigns them: no restore is needed.
    for routing in ("hard", "topk", "gated", "oracle"):
        pipeline.predict(x[:6], routing, k=2, true_superclass=np.array([0, 1] * 3))
    assert "_base" not in vars(pipeline)   # no host copy is taken unless apply() is used
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, pipeline.trunk.weights))
    # A swap that fails half-way (the last delta does not fit its kernel) puts every
    # weight it already wrote back before the error propagates.
    good = delta_sets["a"]
    last = list(good.deltas)[-1]
    shape = good.deltas[last].shape
    # It broadcasts against its kernel (so it is computed), but the result has the wrong
    # shape for the variable: the write of this last layer fails after the others.
    deltas = {name: d for name, d in good.deltas.items() if name != last}
    deltas[last] = QuantizedTensor.quantize(np.zeros((2, *shape)), 4)
    broken = dataclasses.replace(good, deltas=deltas)
    broken_pipeline = SuperSubPipeline(generalist, {**delta_sets, "a": broken}, TOY)
    with pytest.raises(ValueError, match=rf"variable '.*{last}/kernel.*Shape mismatch"):
        broken_pipeline.apply("a")
    assert broken_pipeline.generalist_weights_equal()
    # A write that fails after some variables were written (a device error, say).
    real_write = pipeline._write_specialist

    def half_then_fail(*args):
        real_write(*args)  # every variable now holds the specialist's value
        raise RuntimeError("device lost")

    pipeline._write_specialist = half_then_fail
    with pytest.raises(RuntimeError, match="device lost"):
        pipeline.apply("b")
    assert pipeline.generalist_weights_equal()


@pytest.mark.slow
def test_stages_before_from_stage_run_once_and_are_shared(tiny_system):
    """With deltas only from stage 2 on, stage 1's output of the earlier stages feeds
    stage 2 directly, and the result equals the specialist built as a separate model."""
    import tf_keras as keras

    from supersub_tf.deltas.specialist import (
        build_delta_specialist, extract_delta_set, materialize)

    generalist, _, _, x = tiny_system
    rng = np.random.default_rng(1)
    sets = {}
    for name in TOY.superclass_names:
        model = build_delta_specialist(generalist, TOY.num_subclasses(name), from_stage=2,
                                       bits=None)
        model.compile(keras.optimizers.SGD(0.05),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, rng.integers(0, TOY.num_subclasses(name), 32), epochs=1, verbose=0)
        sets[name] = extract_delta_set(model, name, 8)
    pipeline = SuperSubPipeline(generalist, sets, TOY)
    from supersub_tf.deltas.specialist import layer_stage

    # The stem and stage 1 are shared; nothing of stage 2 or later is.
    assert pipeline._forward.input_key not in pipeline._boundary
    prefix_stages = {layer_stage(step.layer) for step in pipeline._prefix}
    assert 1 in prefix_stages and not {2, 3} & prefix_stages
    probs, _, shared = pipeline.stage_one(x)
    for name in TOY.superclass_names:
        from_shared, _ = pipeline.specialist_probs(x, name, shared)
        from_images, _ = pipeline.specialist_probs(x, name)
        separate = materialize(generalist, sets[name])(x, training=False).numpy()
        np.testing.assert_allclose(from_shared, from_images, atol=1e-6)
        np.testing.assert_allclose(from_shared, tf_softmax(separate), atol=1e-5)


def tf_softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_untrained_vanilla_base_specialists_are_the_vanilla_network_renormalised():
    """On the vanilla base, each specialist's head starts from the vanilla head's rows of
    its superclass: untrained (zero deltas, 4-bit QAT), it gives exactly the vanilla
    network's probabilities renormalised over its superclass, and Super-Sub with soft
    routing gives back the vanilla network's own probabilities."""
    import tf_keras as keras

    from supersub_tf.deltas.specialist import (
        build_delta_specialist, extract_delta_set, head_rows)
    from supersub_tf.models import create_model

    keras.utils.set_random_seed(3)
    vanilla = create_model("resnet8", TOY.num_classes, (16, 16, 3), width=0.25)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(24, 16, 16, 3)).astype(np.float32)
    vanilla.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    vanilla.fit(x, rng.integers(0, TOY.num_classes, 24), epochs=1, verbose=0)
    fine = tf_softmax(vanilla(x, training=False).numpy())
    delta_sets = {}
    for s, name in enumerate(TOY.superclass_names):
        block = TOY.fine_labels_of(s)
        specialist = build_delta_specialist(vanilla, len(block), bits=4,
                                            head_init=head_rows(vanilla, block))
        renormalised = fine[:, block] / fine[:, block].sum(1, keepdims=True)
        np.testing.assert_allclose(tf_softmax(specialist(x, training=False).numpy()),
                                   renormalised, atol=1e-5)
        delta_sets[name] = extract_delta_set(specialist, name, 4)
    pipeline = SuperSubPipeline(vanilla, delta_sets, TOY, stage_one_head="fine")
    sup, stage_one_fine, _ = pipeline.stage_one(x)
    np.testing.assert_allclose(stage_one_fine, fine, atol=1e-5)
    np.testing.assert_allclose(sup[:, 0], fine[:, TOY.fine_labels_of(0)].sum(1), atol=1e-5)
    # p(s) * p(fine | s) summed over every superclass is the vanilla network again.
    np.testing.assert_allclose(pipeline.predict(x, "soft").fine_probs, fine, atol=1e-5)
    # Gated: above tau the vanilla answer itself, below it the specialists'.
    tau = float(np.median(fine.max(1)))
    gated = pipeline.predict(x, "gated", k=2, tau=tau)
    confident = fine.max(1) >= tau
    np.testing.assert_allclose(gated.fine_probs[confident], fine[confident], atol=1e-6)
    # Their p(subclass | superclass) is the vanilla network's own, renormalised.
    answer = gated.fine[confident]
    own_block = sup[confident, TOY.fine_to_superclass[answer]]
    np.testing.assert_allclose(gated.subclass_prob[confident],
                               fine[confident, answer] / own_block, rtol=1e-5)
    topk = pipeline.predict(x, "topk", k=2)
    np.testing.assert_allclose(gated.fine_probs[~confident], topk.fine_probs[~confident],
                               atol=1e-6)
