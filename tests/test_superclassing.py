"""WordNet readers, superclassing specs and the committed presets."""

from pathlib import Path

import pytest

from supersub_tf.data import build_spec, load_hierarchy, spec_class_ids
from supersub_tf.data.class_lists import read_class_ids
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
    class_ids = (read_class_ids(classes) if classes else
                 spec_class_ids(name, meta_dir=path if source == "imagenet" else None))
    _, out = build_preset(name, class_ids=class_ids, wordnet_source=source, wordnet_path=path,
                          output=tmp_path / f"{name}.json")
    assert out.read_bytes() == (PRESET_DIR / f"{name}.json").read_bytes()


def test_load_preset_from_user_files(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("SUPERSUB_DATA_DIR", str(shared_data))
    spec = tmp_path / "pets.yaml"
    spec.write_text("name: pets\nsuperclasses:\n  dog: n02084071\n  cat: n02121620\n")
    h = load_hierarchy(spec)
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
    hierarchy = build_spec("superclassing_imagenet").hierarchy
    assert hierarchy.to_json() == (PRESET_DIR / "superclassing_imagenet.json").read_text()


def test_spec_json_is_built_not_loaded(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("SUPERSUB_DATA_DIR", str(shared_data))
    spec = tmp_path / "spec.json"
    spec.write_text('{"name": "felines", "superclasses": {"cat": "n02121620"}}')
    assert load_hierarchy(spec).num_classes == 7


# A user's spec over a dataset that holds only some ImageNet classes (issue 22): an
# ImageNet-layout tree (train/<wnid>/, val/<wnid>/) of six Imagewoof/Imagenette classes.
SPEC_OVER_DATA = """\
name: music
superclasses:
  dog: n02084071
  device: n03183080
  instrument: n03800933
resolve: {n03394916: instrument}
"""
#: Shih-Tzu and beagle (dogs), dingo (not under n02084071 in WordNet), French horn (an
#: instrument, resolved), chain saw (a device) and tench (in no superclass).
DATA_WNIDS = ["n01440764", "n02086240", "n02088364", "n02115641", "n03000684", "n03394916"]


def write_wnid_tree(root: Path, wnids: list[str]) -> Path:
    """``root/{train,val}/<wnid>/`` with two and one tiny JPEGs per class."""
    from PIL import Image

    for k, wnid in enumerate(wnids):
        for split, count in (("train", 2), ("val", 1)):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (12, 12), (20 * k, 80, 40 * i)).save(folder / f"{i}.JPEG")
    return root


def test_a_spec_over_the_classes_a_dataset_holds(tmp_path, shared_data, monkeypatch, capsys):
    """Classes of the spec's list (imagenet1k) the data lacks are not required, even when
    two superclasses would take them (25 instruments are also devices); the data's classes
    in no superclass (the dingo, the tench) are named by both commands."""
    from supersub_tf.cli import main
    from supersub_tf.config import DataConfig
    from supersub_tf.data import create_source
    from supersub_tf.data.summary import format_gaps, split_counts

    monkeypatch.setenv("SUPERSUB_DATA_DIR", str(shared_data))  # WordNet and imagenet1k
    root = write_wnid_tree(tmp_path / "woof_nette", DATA_WNIDS)
    spec = tmp_path / "music.yaml"
    spec.write_text(SPEC_OVER_DATA)
    expected = {"dog": ["n02086240", "n02088364"], "device": ["n03000684"],
                "instrument": ["n03394916"]}
    left_out = ("2 class(es) of the dataset fall in no superclass of music and are left out: "
                "n01440764 (tench), n02115641 (dingo)")
    absent = ("244 class(es) of music's class list (imagenet1k) that its superclasses would "
              "take are not in the dataset and are left out (dog 116, device 103, device or "
              "instrument 25); the hierarchy has the classes present")

    # --preset my.yaml: built over the tree's classes
    source = create_source(DataConfig(dataset="imagenet", preset=str(spec), path=str(root),
                                      image_size=16, verify_images=False))  # no TensorFlow
    h = source.hierarchy
    assert {s.name: [c.id for c in s.subclasses] for s in h.superclasses} == expected
    assert source.notes == [left_out, absent]
    assert source.note_names[left_out] == ["n01440764 (tench)", "n02115641 (dingo)"]
    assert len(source.note_names[absent]) == 244
    assert {"n02672831 (accordion): device or instrument", "n03085013 (computer keyboard): "
            "device", "n02085620 (Chihuahua): dog"} <= set(source.note_names[absent])
    gaps = format_gaps(split_counts(source))
    assert f"{left_out}\n  n01440764 (tench)\n  n02115641 (dingo)\n{absent}\n" in gaps

    # data build-preset --classes <the tree>: the same hierarchy, the same line
    out = tmp_path / "music.json"
    assert main(["data", "build-preset", str(spec), "--classes", str(root),
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["music: 3 superclasses, 4 classes (dog 2, device 1, instrument 1)",
                       left_out, "  n01440764 (tench)", "  n02115641 (dingo)", absent,
                       f"wrote {out}"]
    assert load_preset(out) == h


def test_a_spec_over_data_lacking_every_class_of_a_superclass_names_it(tmp_path, shared_data,
                                                                       monkeypatch):
    from supersub_tf.presets import build_over_data

    monkeypatch.setenv("SUPERSUB_DATA_DIR", str(shared_data))
    spec = tmp_path / "explicit.yaml"
    spec.write_text("name: explicit\nclasses: explicit\nsuperclasses:\n"
                    "  fish: {subclasses: [n01440764, n01443537]}\n"
                    "  dog: {subclasses: [n02086240]}\n")
    built = build_over_data(spec, ["n01440764", "n02086240", "n02115641"])
    assert built.hierarchy.class_ids == ["n01440764", "n02086240"]
    assert built.not_in_data == (("n01443537", "n01443537", "fish"),)  # goldfish: absent
    assert built.hierarchy.left_out == (("n02115641", "n02115641"),)
    with pytest.raises(HierarchyError, match="superclass 'dog' has no subclasses"):
        build_over_data(spec, ["n01440764"])


def _imports_of(path: Path) -> set[str]:
    """The supersub_tf modules a source file imports (anywhere in it, lazily or not)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {name for name in found if name.startswith("supersub_tf")}


def test_presets_read_no_dataset():
    """presets takes a plain list of class ids: neither it nor anything it imports
    reaches supersub_tf.data (which imports presets), so the two form no import cycle."""
    import supersub_tf

    package = Path(supersub_tf.__file__).parent

    def file_of(module: str) -> Path | None:
        base = package.parent.joinpath(*module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None  # a name imported from a module, not a module

    seen, todo = set(), ["supersub_tf.presets"]
    while todo:
        module = todo.pop()
        if module in seen or (path := file_of(module)) is None:
            continue
        seen.add(module)
        todo += sorted(_imports_of(path))
    assert "supersub_tf.presets" in seen and "supersub_tf.superclassing" in seen
    assert not [m for m in seen if m == "supersub_tf.data" or m.startswith("supersub_tf.data.")]
    assert "supersub_tf.presets" in _imports_of(package / "data" / "__init__.py")


def test_every_class_source_of_a_spec_has_a_reader():
    """Each ``classes:`` value a spec may name is read by data.spec_class_ids: through a
    source's class_ids_in_data, or one of the two lists it reads itself."""
    from supersub_tf.data import SPEC_CLASS_DATASETS, source_class
    from supersub_tf.superclassing import CLASS_SOURCES

    assert set(CLASS_SOURCES) == {*SPEC_CLASS_DATASETS, "explicit", "imagenet1k"}
    for dataset in SPEC_CLASS_DATASETS.values():
        assert "class_ids_in_data" in vars(source_class(dataset))  # its own, not the base's
