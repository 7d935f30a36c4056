"""The on-disk Super-Sub system: packing, round trips, sizes, verification, atomicity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from supersub_tf.deltas import storage
from supersub_tf.deltas.delta_set import DeltaSet, QuantizedTensor
from supersub_tf.deltas.packing import pack_codes, packed_size, unpack_codes
from supersub_tf.deltas.storage import load_system, save_system
from supersub_tf.deltas.storage_report import format_storage_report, storage_report
from supersub_tf.deltas.system_checks import trunk_fingerprint
from supersub_tf.errors import DataError
from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass

SIZES = {"dog": 3, "reptile amphibian": 2, "vehicle/car": 4}  # odd names on purpose
DELTA_LAYERS = ("stage2_block1_1_conv", "stage3_block1_1_conv", "stage3_block1_2_conv",
                "stage3_block1_proj_conv")
BN_LAYER = "stage3_block1_2_bn"


def make_hierarchy() -> Hierarchy:
    supers = [Superclass(name, tuple(Subclass(f"{name}-{i}", f"{name} {i}") for i in range(n)))
              for name, n in SIZES.items()]
    return Hierarchy(supers, name="test")


def make_generalist(width: float = 0.25, seed: int = 0):
    import tf_keras as keras

    from supersub_tf.models import create_model

    keras.utils.set_random_seed(seed)
    return create_model("resnet8", len(SIZES), (16, 16, 3), width=width)


def make_delta_sets(generalist, bits: int | None, layers=DELTA_LAYERS,
                    seed: int = 0) -> dict[str, DeltaSet]:
    """Random deltas for ``layers`` and a random head and batch norm per specialist."""
    rng = np.random.default_rng(seed)
    features = generalist.get_layer("logits").get_weights()[0].shape[0]
    sets = {}
    for name, n in SIZES.items():
        deltas = {layer: QuantizedTensor.quantize(
            rng.normal(0, 0.01, generalist.get_layer(layer).get_weights()[0].shape), bits)
            for layer in layers}
        bn = [rng.normal(size=w.shape).astype(np.float32)
              for w in generalist.get_layer(BN_LAYER).get_weights()]
        owned = {"logits": [rng.normal(size=(features, n)).astype(np.float32),
                            rng.normal(size=(n,)).astype(np.float32)],
                 BN_LAYER: bn}
        sets[name] = DeltaSet(name, bits, deltas, owned)
    return sets


BACKBONE = {"model": "resnet8", "width": 0.25, "image_size": 16}


def settings(bits):
    return {"bits": bits, "from_stage": 2, "train_batchnorm": True}


@pytest.fixture(scope="module")
def generalist():
    return make_generalist()


@pytest.fixture
def system(tmp_path, generalist) -> Path:
    """A saved 4-bit system."""
    return save_system(tmp_path / "system", generalist, make_delta_sets(generalist, 4),
                       make_hierarchy(), BACKBONE, settings(4))


def edit_manifest(path: Path, change) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


# ------------------------------------------------------------------------------- packing
@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("count", [1, 5, 7, 8, 33, 1000])
def test_pack_unpack_round_trip(bits, count):
    levels = 2 ** (bits - 1) - 1
    codes = np.random.default_rng(bits * count).integers(-levels, levels + 1, count)
    codes[0] = -levels
    packed = pack_codes(codes.astype(np.int8), bits)
    assert packed.dtype == np.uint8 and packed.size == packed_size(count, bits)
    np.testing.assert_array_equal(unpack_codes(packed, bits, (count,)), codes)


def test_packing_layouts():
    # 8 bits: one per byte, offset by 127; 4 bits: two per byte, low nibble first.
    np.testing.assert_array_equal(pack_codes(np.array([-127, 0, 127]), 8), [0, 127, 254])
    np.testing.assert_array_equal(pack_codes(np.array([-7, 7, 0]), 4), [0 | 14 << 4, 7])
    assert packed_size(4, 6) == 3 and packed_size(4, 2) == 1 and packed_size(5, 6) == 4


def test_pack_rejects_out_of_range_codes_and_bad_lengths():
    with pytest.raises(ValueError, match="must lie in"):
        pack_codes(np.array([-2]), 2)  # 2-bit narrow range is [-1, 1]
    with pytest.raises(ValueError, match="packed bytes"):
        unpack_codes(np.zeros(3, np.uint8), 4, (8,))


# ------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("bits", [None, 8, 6, 4, 2])
def test_round_trip(tmp_path, generalist, bits):
    sets = make_delta_sets(generalist, bits)
    hierarchy = make_hierarchy()
    path = save_system(tmp_path / "sys", generalist, sets, hierarchy, BACKBONE, settings(bits))
    loaded = load_system(path)
    assert loaded.hierarchy == hierarchy
    assert loaded.delta_settings == settings(bits)
    assert loaded.backbone.num_classes == len(SIZES)
    assert loaded.backbone.parameters == generalist.count_params()
    assert list(loaded.delta_sets) == list(SIZES)
    for name, original in sets.items():
        got = loaded.delta_sets[name]
        assert (got.superclass, got.bits) == (name, bits)
        assert list(got.deltas) == list(DELTA_LAYERS)
        for layer, q in original.deltas.items():
            assert got.deltas[layer].codes.dtype == q.codes.dtype
            np.testing.assert_array_equal(got.deltas[layer].codes, q.codes)
            if bits is None:
                assert got.deltas[layer].scales is None
            else:
                np.testing.assert_array_equal(got.deltas[layer].scales, q.scales)
            np.testing.assert_array_equal(got.deltas[layer].dequantize(), q.dequantize())
        assert list(got.owned) == list(original.owned)
        for layer, weights in original.owned.items():
            for a, b in zip(got.owned[layer], weights, strict=True):
                np.testing.assert_array_equal(a, b)
    for a, b in zip(loaded.generalist.get_weights(), generalist.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_replacing_a_system_keeps_only_the_new_one(tmp_path, generalist, system):
    save_system(system, generalist, make_delta_sets(generalist, 2), make_hierarchy(),
                BACKBONE, settings(2))
    assert load_system(system).delta_settings["bits"] == 2
    assert os.listdir(tmp_path) == ["system"]


def test_refuses_to_replace_an_unrelated_folder(tmp_path, generalist):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing"):
        save_system(target, generalist, make_delta_sets(generalist, 4), make_hierarchy(),
                    BACKBONE, settings(4))
    assert (target / "notes.txt").read_text() == "keep me"


def test_save_rejects_inconsistent_inputs(tmp_path, generalist):
    sets = make_delta_sets(generalist, 4)
    with pytest.raises(DataError, match="do not match the hierarchy"):
        save_system(tmp_path / "a", generalist, {"dog": sets["dog"]}, make_hierarchy(),
                    BACKBONE, settings(4))
    with pytest.raises(DataError, match="delta_settings says 8"):
        save_system(tmp_path / "b", generalist, sets, make_hierarchy(), BACKBONE, settings(8))
    sets["dog"].deltas.pop(DELTA_LAYERS[0])
    with pytest.raises(DataError, match="all must share"):
        save_system(tmp_path / "c", generalist, sets, make_hierarchy(), BACKBONE, settings(4))
    sets = make_delta_sets(generalist, 4)
    sets["dog"].deltas[DELTA_LAYERS[0]].codes[0, 0, 0, 0] = 9  # 4-bit codes stop at 7
    with pytest.raises(DataError, match=r"'dog', delta of layer .* must lie in \[-7, 7\]"):
        save_system(tmp_path / "d", generalist, sets, make_hierarchy(), BACKBONE, settings(4))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------- sizes
def test_packed_sizes(tmp_path):
    big = make_generalist(width=1.0)
    convs = [layer.name for layer in big.layers if layer.name.endswith("_conv")]
    reports = {}
    for bits in (8, 6, 4, 2):
        path = save_system(tmp_path / f"b{bits}", big, make_delta_sets(big, bits, convs),
                           make_hierarchy(), {**BACKBONE, "width": 1.0}, settings(bits))
        reports[bits] = storage_report(path)
    values = reports[8]["delta_values"]
    for bits, report in reports.items():
        for s in report["specialists"]:
            expected = sum(packed_size(int(np.prod(big.get_layer(c).get_weights()[0].shape)),
                                       bits) for c in convs)
            assert s["code_bytes"] == expected
            assert abs(s["code_bytes"] - values * bits / 8) < len(convs)

    def mean_file(bits):
        return np.mean([s["bytes"] for s in reports[bits]["specialists"]])

    assert 0.45 < mean_file(4) / mean_file(8) < 0.6
    assert 0.7 < mean_file(6) / mean_file(8) < 0.8
    codes2, codes8 = (reports[b]["specialists"][0]["code_bytes"] for b in (2, 8))
    assert abs(codes2 / codes8 - 0.25) < 0.01
    assert reports[2]["a"] < reports[4]["a"] < reports[8]["a"] < 1


def test_storage_report_is_consistent(system, generalist):
    report = storage_report(system)
    unit = generalist.count_params() * 4
    assert report["parameters"] == generalist.count_params()
    assert report["float32_network_bytes"] == unit
    files = sorted(p for p in system.rglob("*") if p.is_file())
    assert report["total_bytes"] == sum(p.stat().st_size for p in files)
    assert report["total_bytes"] == (report["manifest_bytes"] + report["generalist_bytes"]
                                     + report["specialist_bytes"])
    for s in report["specialists"]:
        assert s["bytes"] == (system / s["file"]).stat().st_size
        assert s["bytes"] == (s["code_bytes"] + s["scale_bytes"] + s["owned_bytes"]
                              - s["compression_saving_bytes"] + s["overhead_bytes"])
        assert s["compression_saving_bytes"] >= 0 and 0 < s["overhead_bytes"] < 400
        assert s["delta_bytes"] == s["code_bytes"] + s["scale_bytes"]
        assert s["overhead_bytes"] > 0 and s["owned_layers"] == sorted(["logits", BN_LAYER])
    mean = np.mean([s["bytes"] for s in report["specialists"]])
    assert report["a"] == pytest.approx(mean / unit) and report["a"] < 1
    assert report["a_n_plus_1"] == pytest.approx(report["a"] * 3 + 1)
    assert report["separate_networks"] == 4
    text = format_storage_report(report)
    assert "a*N + 1" in text and "generalist.weights.h5" in text
    assert all(s["file"] in text for s in report["specialists"])


def test_float_deltas_cost_about_a_network(tmp_path, generalist):
    layers = [layer.name for layer in generalist.layers if layer.name.endswith("_conv")]
    path = save_system(tmp_path / "f", generalist, make_delta_sets(generalist, None, layers),
                       make_hierarchy(), BACKBONE, settings(None))
    report = storage_report(path)
    specialists, unit = report["specialists"], report["float32_network_bytes"]
    assert specialists[0]["scale_bytes"] == 0
    assert specialists[0]["code_bytes"] == report["delta_values"] * 4
    # Every convolution weight once in float32: the codes alone are that share of a network.
    assert specialists[0]["code_bytes"] / unit == pytest.approx(
        report["delta_values"] / report["parameters"])
    assert report["a"] == pytest.approx(np.mean(
        [s["code_bytes"] + s["owned_bytes"] + s["overhead_bytes"] - s["compression_saving_bytes"]
         for s in specialists]) / unit)


# ------------------------------------------------------------------------------- verification
def test_missing_manifest(tmp_path):
    with pytest.raises(DataError, match="manifest.json: not found"):
        load_system(tmp_path)


def test_unreadable_manifest(system):
    (system / "manifest.json").write_text("{ not json")
    with pytest.raises(DataError, match=r"manifest.json: not valid JSON \(line 1, column 3: "
                                        r"Expecting property name"):
        load_system(system)


def test_unknown_format_version(system):
    edit_manifest(system, lambda m: m.update(format_version=99))
    with pytest.raises(DataError, match="manifest.json: unknown format version 99"):
        load_system(system)


@pytest.mark.parametrize("which", ["generalist.weights.h5", "specialists/dog.delta"])
def test_missing_file(system, which):
    (system / which).unlink()
    with pytest.raises(DataError, match=f"{which}: missing"):
        load_system(system)


@pytest.mark.parametrize("which", ["generalist.weights.h5", "specialists/reptile_amphibian.delta"])
def test_corrupted_byte_is_a_sha_mismatch(system, which):
    data = bytearray((system / which).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (system / which).write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{which}: sha256 mismatch"):
        load_system(system)
    with pytest.raises(DataError, match="sha256 mismatch"):
        storage_report(system)


def test_truncated_file_is_a_size_mismatch(system):
    path = system / "specialists" / "vehicle_car.delta"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="vehicle_car.delta: size"):
        load_system(system)


def test_layer_shape_disagreeing_with_manifest(system):
    def reshape(m):
        m["delta_layers"][1]["shape"] = [3, 3, 32, 8]  # same count, other channels
    edit_manifest(system, reshape)
    with pytest.raises(DataError, match=r"specialists/dog.delta: written for another array "
                                        r"layout"):
        load_system(system)


def test_specialist_arrays_disagreeing_with_manifest(system, generalist):
    """A well-formed file (matching sha) that lacks a layer the manifest lists."""
    target = system / "specialists" / "dog.delta"
    delta_set = make_delta_sets(generalist, 4, DELTA_LAYERS[1:])["dog"]
    layout = [(name, tuple(generalist.get_layer(name).get_weights()[0].shape))
              for name in DELTA_LAYERS[1:]]
    storage.write_specialist(target, delta_set, 0, [c.id for c in
                                                    make_hierarchy().superclasses[0].subclasses],
                             layout)

    def rehash(m):
        m["specialists"][0].update(storage.file_entry(system, "specialists/dog.delta"))
    edit_manifest(system, rehash)
    with pytest.raises(DataError, match=r"dog.delta: written for another array layout"):
        load_system(system)


def test_hierarchy_not_matching_specialists(system):
    def rename(m):
        m["hierarchy"]["superclasses"][0]["name"] = "cat"
    edit_manifest(system, rename)
    with pytest.raises(DataError, match="manifest.json: the hierarchy's superclasses"):
        load_system(system)


@pytest.mark.parametrize("command", ["load", "storage"])
def test_edited_hierarchy_is_caught_by_the_specialists(system, command):
    """Two subclasses swapped in the manifest keep every count right; the specialist
    archives (checksummed) still know the order their heads were trained on."""
    def swap(m):
        subclasses = m["hierarchy"]["superclasses"][0]["subclasses"]
        subclasses[0], subclasses[1] = subclasses[1], subclasses[0]
    edit_manifest(system, swap)
    check = load_system if command == "load" else storage_report
    with pytest.raises(DataError, match=r"dog.delta: this specialist was trained as superclass "
                                        r"#0 over .*manifest.json was edited"):
        check(system)


def test_a_format_1_system_says_how_to_rebuild_it(system):
    edit_manifest(system, lambda m: m.update(format_version=1))
    with pytest.raises(DataError, match="older supersub_tf.*rerunning the run"):
        load_system(system)


def as_format_2(system: Path) -> None:
    """Rewrites a saved system as format 2 wrote it: one ``.npz`` per specialist with its
    classes as ``meta/*`` arrays."""
    manifest = json.loads((system / "manifest.json").read_text())
    for entry in manifest["specialists"]:
        path, meta, arrays = storage.read_specialist(system, manifest, entry)
        npz = path.with_suffix(".npz")
        with open(npz, "wb") as f:
            np.savez(f, **arrays, **{"meta/superclass_index": np.int32(meta["superclass_index"]),
                                     "meta/subclasses": np.asarray(meta["subclasses"])})
        path.unlink()
        entry.update(storage.file_entry(system, f"specialists/{npz.name}"))
    manifest["format_version"] = 2
    (system / "manifest.json").write_text(json.dumps(manifest))


def test_a_format_2_system_loads_and_converts(system, capsys):
    from supersub_tf.cli import main

    before = load_system(system)
    as_format_2(system)
    assert sorted(p.suffix for p in (system / "specialists").iterdir()) == [".npz"] * 3
    old = load_system(system)
    assert storage_report(system)["format_version"] == 2
    assert main(["storage", str(system), "--convert"]) == 0
    assert "format 2 -> 3" in capsys.readouterr().out
    assert sorted(p.suffix for p in (system / "specialists").iterdir()) == [".delta"] * 3
    converted = load_system(system)
    for name, delta_set in before.delta_sets.items():
        for loaded in (old, converted):
            other = loaded.delta_sets[name]
            for layer, q in delta_set.deltas.items():
                np.testing.assert_array_equal(other.deltas[layer].codes, q.codes)
                np.testing.assert_array_equal(other.deltas[layer].scales, q.scales)
            for layer, weights in delta_set.owned.items():
                for a, b in zip(other.owned[layer], weights):
                    np.testing.assert_array_equal(a, b)
    assert main(["storage", str(system), "--convert"]) == 0
    assert "already format 3" in capsys.readouterr().out


def test_a_format_2_archive_with_other_arrays(system):
    as_format_2(system)
    path = system / "specialists" / "dog.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if "stage2_block1_1_conv" not in k}
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    edit_manifest(system, lambda m: m["specialists"][0].update(
        storage.file_entry(system, "specialists/dog.npz")))
    with pytest.raises(DataError, match=r"dog.npz: arrays disagree.*stage2_block1_1_conv"):
        load_system(system)


@pytest.mark.parametrize("command", ["load", "storage"])
def test_a_specialist_of_another_trunk_is_refused(tmp_path, generalist, system, command):
    """A .delta copied in from a system with another trunk, its size and sha256 written
    into the manifest: same layout and classes, so only the trunk record can tell."""
    other_trunk = make_generalist(seed=1)
    other = save_system(tmp_path / "other", other_trunk, make_delta_sets(other_trunk, 4),
                        make_hierarchy(), BACKBONE, settings(4))
    (system / "specialists" / "dog.delta").write_bytes(
        (other / "specialists" / "dog.delta").read_bytes())
    edit_manifest(system, lambda m: m["specialists"][0].update(
        storage.file_entry(system, "specialists/dog.delta")))
    check = load_system if command == "load" else storage_report
    ours = json.loads((system / "manifest.json").read_text())["trunk_fingerprint"]
    theirs = json.loads((other / "manifest.json").read_text())["trunk_fingerprint"]
    assert ours == trunk_fingerprint(generalist) != theirs == trunk_fingerprint(other_trunk)
    with pytest.raises(DataError, match=rf"^{system}/specialists/dog.delta: trained on another "
                                        rf"trunk \(fingerprint {theirs}\) than "
                                        rf"{system}/generalist.weights.h5 \({ours}\)"):
        check(system)


def test_a_replaced_trunk_is_refused(tmp_path, system):
    """The weights file of another trunk (same backbone), its size and sha256 written
    into the manifest: the manifest's trunk fingerprint no longer matches the weights."""
    other_trunk = make_generalist(seed=1)
    other_trunk.save_weights(str(system / "generalist.weights.h5"))
    edit_manifest(system, lambda m: m["generalist"].update(
        storage.file_entry(system, "generalist.weights.h5")))
    with pytest.raises(DataError, match=rf"^{system}/generalist.weights.h5: its weights are "
                                        rf"another trunk \(fingerprint "
                                        rf"{trunk_fingerprint(other_trunk)}\)"):
        load_system(system)


def test_a_system_without_trunk_fingerprints_still_loads(system, generalist):
    """Systems written before the fingerprint existed: no record, no check."""
    manifest = json.loads((system / "manifest.json").read_text())
    layout = [(d["name"], tuple(d["shape"])) for d in manifest["delta_layers"]]
    del manifest["trunk_fingerprint"]
    sets = make_delta_sets(generalist, 4)
    for index, entry in enumerate(manifest["specialists"]):
        storage.write_specialist(system / entry["file"], sets[entry["superclass"]], index,
                                 [c.id for c in make_hierarchy().superclasses[index].subclasses],
                                 layout)  # no trunk: as the old code wrote it
        entry.update(storage.file_entry(system, entry["file"]))
        assert "trunk_fingerprint" not in storage.read_specialist(system, manifest, entry)[1]
    (system / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_system(system)
    np.testing.assert_array_equal(loaded.delta_sets["dog"].deltas[DELTA_LAYERS[0]].codes,
                                  sets["dog"].deltas[DELTA_LAYERS[0]].codes)
    assert storage_report(system)["num_specialists"] == 3


def test_trunk_fingerprint_is_of_the_weights():
    """Equal for two builds of the same weights, different when one weight changes."""
    a, b = make_generalist(), make_generalist()
    assert trunk_fingerprint(a) == trunk_fingerprint(b)
    assert len(trunk_fingerprint(a)) == 32
    weights = b.get_weights()
    weights[0] = weights[0].copy()
    weights[0].flat[0] += 1e-3
    b.set_weights(weights)
    assert trunk_fingerprint(a) != trunk_fingerprint(b)


def test_generalist_of_another_backbone(system):
    edit_manifest(system, lambda m: m["backbone"].update(width=0.5))
    with pytest.raises(DataError, match="generalist.weights.h5: does not load"):
        load_system(system)


# ------------------------------------------------------------------------------- atomicity
def test_failure_mid_write_keeps_the_old_system(system, generalist, monkeypatch):
    before = {p: p.read_bytes() for p in system.rglob("*") if p.is_file()}
    calls = []

    def failing_writer(path, delta_set, *classes):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        Path(path).write_bytes(b"a specialist")

    monkeypatch.setattr(storage, "write_specialist", failing_writer)
    with pytest.raises(OSError, match="disk full"):
        save_system(system, generalist, make_delta_sets(generalist, 8), make_hierarchy(),
                    BACKBONE, settings(8))
    assert os.listdir(system.parent) == ["system"]
    assert {p: p.read_bytes() for p in system.rglob("*") if p.is_file()} == before
    assert load_system(system).delta_settings["bits"] == 4


def test_failure_on_first_save_leaves_nothing(tmp_path, generalist, monkeypatch):
    def failing(path, model):
        raise RuntimeError("boom")

    monkeypatch.setattr(storage, "write_generalist", failing)
    with pytest.raises(RuntimeError, match="boom"):
        save_system(tmp_path / "new", generalist, make_delta_sets(generalist, 4),
                    make_hierarchy(), BACKBONE, settings(4))
    assert not list(tmp_path.iterdir())


def test_failed_rename_restores_the_old_system(system, generalist, monkeypatch):
    real_replace = os.replace

    def replace(src, dst):
        if Path(src).name.endswith(".tmp"):
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        save_system(system, generalist, make_delta_sets(generalist, 8), make_hierarchy(),
                    BACKBONE, settings(8))
    monkeypatch.undo()
    assert os.listdir(system.parent) == ["system"]
    assert load_system(system).delta_settings["bits"] == 4


def catch_all_sets(generalist, bits=4) -> dict[str, DeltaSet]:
    """make_delta_sets with one more head output ("other") per specialist."""
    rng = np.random.default_rng(1)
    sets = make_delta_sets(generalist, bits)
    for delta_set in sets.values():
        kernel, bias = delta_set.owned["logits"]
        delta_set.owned["logits"] = [
            np.concatenate([kernel, rng.normal(size=(kernel.shape[0], 1)).astype(np.float32)],
                           1), np.append(bias, np.float32(0.3))]
        delta_set.owned[BN_LAYER][3] = np.abs(delta_set.owned[BN_LAYER][3]) + 0.5  # variance
        delta_set.catch_all = True
    return sets


def test_catch_all_system_round_trip_and_hard_routing_view(tmp_path, generalist):
    from supersub_tf.supersub.pipeline import SuperSubPipeline

    h, sets = make_hierarchy(), catch_all_sets(generalist)
    with pytest.raises(DataError, match="catch_all=True, delta_settings says catch_all=False"):
        save_system(tmp_path / "bad", generalist, sets, h, BACKBONE, settings(4))
    path = save_system(tmp_path / "ca", generalist, sets, h, BACKBONE,
                       {**settings(4), "catch_all": True})
    loaded = load_system(path)
    assert all(d.catch_all for d in loaded.delta_sets.values())
    head = loaded.delta_sets["dog"].owned["logits"]
    np.testing.assert_array_equal(head[0], sets["dog"].owned["logits"][0])
    # A catch-all head of the wrong size (the "other" output missing) is refused on save.
    short = catch_all_sets(generalist)
    short["dog"] = short["dog"].without_other()
    short["dog"].catch_all = True
    with pytest.raises(DataError, match="head has 3 outputs, expected 4"):
        save_system(tmp_path / "short", generalist, short, h, BACKBONE,
                    {**settings(4), "catch_all": True})
    # Hard routing ignores p(other): the exports' view (the "other" output dropped) gives
    # the same answers, top-k's renormalised combination differs from plain top-k.
    x = np.random.default_rng(0).normal(size=(12, 16, 16, 3)).astype(np.float32)
    full = SuperSubPipeline(loaded.generalist, loaded.delta_sets, h)
    view = loaded.for_hard_routing()
    plain = SuperSubPipeline(view.generalist, view.delta_sets, h)
    assert view.delta_settings["catch_all_dropped"] and not plain.catch_all
    hard, hard_view = full.predict(x, "hard"), plain.predict(x, "hard")
    np.testing.assert_array_equal(hard.fine, hard_view.fine)
    np.testing.assert_allclose(hard.subclass_prob, hard_view.subclass_prob, rtol=1e-5)
    _, other = full.routed_subclass_probs(x, np.zeros((12, 1), np.int64))
    assert other.shape == (12, 3) and (other[:, 1:] == 0).all()
    assert (other[:, 0] > 0).all(), other[:, 0]
    np.testing.assert_allclose(full.predict(x, "topk", k=3).fine_probs.sum(1), 1.0, rtol=1e-5)
