"""WordNet readers, superclassing specs and the committed presets."""

from pathlib import Path

import pytest

from supersub_tf.errors import DataError, HierarchyError
from supersub_tf.presets import PRESET_DIR, build_preset, list_presets, load_preset
from supersub_tf.superclassing import SuperclassingSpec, build_hierarchy
from supersub_tf.wordnet import WORDNET_DB_DIR, WordNet

HAS_WORDNET3 = (Path(WORDNET_DB_DIR) / "data.noun").is_file()


@pytest.fixture(scope="module")
def imagenet_wordnet(shared_data):
    return WordNet.load("imagenet", shared_data / "imagenet-meta")


def test_wordnet_ancestry(imagenet_wordnet):
    wn = imagenet_wordnet
    assert wn.name("n02085620") == "Chihuahua"
    assert wn.is_a("n02085620", "n02084071")        # Chihuahua is a dog
    assert not wn.is_a("n02085620", "n01503061")    # ... not a bird
    assert wn.depth_to("n02085620", "n02085620") == 0
    assert wn.depth_to("n02085620", "n02084071") == 2  # toy dog -> dog
    with pytest.raises(DataError, match="n99999999"):
        wn.name("n99999999")


@pytest.mark.skipif(not HAS_WORDNET3, reason="WordNet 3.0 (apt-get install wordnet-base) absent")
def test_wordnet3_database_matches_imagenet_metadata(imagenet_wordnet):
    wn3 = WordNet.load("wordnet3")
    for wnid in ("n02085620", "n01530575", "n04285008", "n07747607"):
        assert wn3.ancestors(wnid) == imagenet_wordnet.ancestors(wnid), wnid
        assert wn3.names[wnid] == imagenet_wordnet.names[wnid]


def test_missing_metadata_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="wordnet.is_a.txt"):
        WordNet.from_imagenet_meta(tmp_path)
    with pytest.raises(DataError, match="wordnet-base"):
        WordNet.from_wordnet_db(tmp_path)


def test_spec_compact_and_full_forms():
    compact = SuperclassingSpec.from_dict(
        {"name": "x", "superclasses": {"bird": "n01503061", "herp": "n01661091 + n01627424"}})
    assert compact.superclasses[1].synsets == ("n01661091", "n01627424")
    full = SuperclassingSpec.from_dict({"superclasses": [
        {"name": "bird", "synsets": ["n01503061"], "exclude": ["n02153203"]}]}, "my.yaml")
    assert full.name == "my" and full.superclasses[0].exclude == ("n02153203",)
    with pytest.raises(HierarchyError, match="unknown keys"):
        SuperclassingSpec.from_dict({"superclasses": [{"name": "a", "synset": "n1"}]})
    with pytest.raises(HierarchyError, match="neither synsets nor subclasses"):
        SuperclassingSpec.from_dict({"superclasses": [{"name": "a"}]})


def test_user_spec_assigns_classes(imagenet_wordnet):
    spec = SuperclassingSpec.from_dict({"name": "pets", "superclasses": {
        "dog": "n02084071", "cat": "n02121620"}})
    classes = ["n02123045", "n02085620", "n01530575", "n02099601"]  # tabby, Chihuahua, ...
    h = build_hierarchy(spec, classes, imagenet_wordnet)
    assert h.class_ids == ["n02085620", "n02099601", "n02123045"]  # the finch is left out
    assert h.superclass_names == ["dog", "cat"]
    assert [wnid for wnid, _ in h.left_out] == ["n01530575"]  # ... and listed


def test_overlap_needs_a_resolve_rule(imagenet_wordnet):
    data = {"name": "overlap", "superclasses": {"dog": "n02084071", "toy": "n02085374",
                                                "bird": "n01503061"}}
    classes = ["n02085620", "n02099601", "n01530575"]
    with pytest.raises(HierarchyError, match=r"1 class\(es\) descend from two or more "
                                             r"superclasses: n02085620 \(Chihuahua\) "
                                             r"descends from \['dog', 'toy'\]"):
        build_hierarchy(SuperclassingSpec.from_dict(data), classes, imagenet_wordnet)
    data["superclasses"]["terrier"] = "n02092468"  # the Norwich is a terrier and a dog
    with pytest.raises(HierarchyError, match=r"2 class\(es\).*n02085620 \(Chihuahua\).*"
                                             r"n02094258 \(Norwich terrier\) descends from "
                                             r"\['dog', 'terrier'\]"):  # all at once
        build_hierarchy(SuperclassingSpec.from_dict(data), classes + ["n02094258"],
                        imagenet_wordnet)
    del data["superclasses"]["terrier"]
    data["resolve"] = {"n02085620": "toy"}
    h = build_hierarchy(SuperclassingSpec.from_dict(data), classes, imagenet_wordnet)
    assert [s.name for s in h.superclasses[1].subclasses] == ["Chihuahua"]
    data["resolve"] = {"n02085620": "cats"}
    with pytest.raises(HierarchyError, match="unknown superclass"):
        build_hierarchy(SuperclassingSpec.from_dict(data), classes, imagenet_wordnet)


def test_unknown_synset_and_class(imagenet_wordnet):
    spec = SuperclassingSpec.from_dict({"superclasses": {"x": "n00000042"}})
    with pytest.raises(DataError, match="n00000042"):
        build_hierarchy(spec, ["n02085620"], imagenet_wordnet)
    spec = SuperclassingSpec.from_dict({"superclasses": {"dog": "n02084071"}})
    with pytest.raises(DataError, match="class wnid 'n00000043'"):
        build_hierarchy(spec, ["n02085620", "n00000043"], imagenet_wordnet)
    with pytest.raises(HierarchyError, match="superclass 'cat' has no subclasses"):
        build_hierarchy(SuperclassingSpec.from_dict(
            {"superclasses": {"dog": "n02084071", "cat": "n02121620"}}),
            ["n02085620"], imagenet_wordnet)


def test_superclassing_imagenet_counts():
    h = load_preset("superclassing_imagenet")
    sizes = dict(h.summary_rows())
    assert h.num_superclasses == 10
    assert sizes["bird"] == 52 and sizes["dog"] == 116
    assert min(sizes.values()) == 7 and max(sizes.values()) == 116


def test_tiny_and_cifar_presets():
    tiny = load_preset("tiny_imagenet_10")
    assert tiny.num_superclasses == 10 and tiny.num_classes == 67
    assert dict(tiny.summary_rows())["insect"] == 10
    cifar = load_preset("cifar100_20")
    assert cifar.num_superclasses == 20 and cifar.num_classes == 100
    assert set(dict(cifar.summary_rows()).values()) == {5}


@pytest.mark.parametrize("name", list_presets())
@pytest.mark.parametrize("source", ["imagenet", "wordnet3"])
def test_presets_regenerate_byte_for_byte(name, source, shared_data, tmp_path):
    if source == "wordnet3" and not HAS_WORDNET3:
        pytest.skip("WordNet 3.0 database absent")
    path = WORDNET_DB_DIR if source == "wordnet3" else shared_data / "imagenet-meta"
    classes = None
    if name == "superclassing_imagenet" and source == "wordnet3":
        classes = shared_data / "imagenet-meta" / "synset_words.txt"
    if name == "tiny_imagenet_10":
        classes = shared_data / "tiny-imagenet-67.zip"
    _, out = build_preset(name, wordnet_source=source, wordnet_path=path,
                          classes_path=classes, output=tmp_path / f"{name}.json")
    assert out.read_bytes() == (PRESET_DIR / f"{name}.json").read_bytes()


def test_load_preset_from_user_files(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("SUPERSUB_DATA_DIR", str(shared_data))
    spec = tmp_path / "pets.yaml"
    spec.write_text("name: pets\nsuperclasses:\n  dog: n02084071\n  cat: n02121620\n")
    h = load_preset(spec)
    assert h.name == "pets" and dict(h.summary_rows()) == {"dog": 118, "cat": 7}
    h.save(tmp_path / "pets.json")
    assert load_preset(tmp_path / "pets.json") == h
    with pytest.raises(HierarchyError, match="unknown preset 'nope'"):
        load_preset("nope")


@pytest.mark.skipif(not HAS_WORDNET3, reason="WordNet 3.0 database absent")
def test_preset_builds_without_imagenet_metadata(tmp_path, monkeypatch):
    """On a machine with only WordNet 3.0 (Colab), 'auto' falls back to it and to the
    ImageNet class list tensorflow-datasets ships."""
    monkeypatch.setenv("SUPERSUB_DATA_DIR", str(tmp_path))
    hierarchy, _ = build_preset("superclassing_imagenet")
    assert hierarchy.to_json() == (PRESET_DIR / "superclassing_imagenet.json").read_text()


def test_spec_json_is_built_not_loaded(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("SUPERSUB_DATA_DIR", str(shared_data))
    spec = tmp_path / "spec.json"
    spec.write_text('{"name": "felines", "superclasses": {"cat": "n02121620"}}')
    assert load_preset(spec).num_classes == 7
