"""The robustness_mixed_10 preset: the robustness library's mixed_10 superclasses, built by
its rule (one parent per synset, the last listed in ImageNet's wordnet.is_a.txt)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from supersub_tf.errors import HierarchyError
from supersub_tf.data.class_lists import imagenet1k_classes, read_class_ids
from supersub_tf.presets import PRESET_DIR, build_preset, load_preset
from supersub_tf.superclassing import SuperclassingSpec, build_hierarchy
from supersub_tf.wordnet import WORDNET_DB_DIR, WordNet

NAME = "robustness_mixed_10"
HAS_WORDNET3 = (Path(WORDNET_DB_DIR) / "data.noun").is_file()

# common_superclass_wnid('mixed_10') in robustness/tools/imagenet_helpers.py, in its order.
MIXED_10 = {"dog": "n02084071", "bird": "n01503061", "insect": "n02159955",
            "monkey": "n02484322", "car": "n02958343", "feline": "n02120997",
            "truck": "n04490091", "fruit": "n13134947", "fungus": "n12992868",
            "boat": "n02858304"}
COUNTS = {"dog": 116, "bird": 52, "insect": 27, "monkey": 13, "car": 10, "feline": 8,
          "truck": 7, "fruit": 7, "fungus": 7, "boat": 6}


def tree_parents(meta_dir: Path) -> dict[str, str]:
    """ImageNetHierarchy's tree: each synset's parent is the one on its last is-a line."""
    parent: dict[str, str] = {}
    for line in (meta_dir / "wordnet.is_a.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            up, child = line.split()
            parent[child] = up
    return parent


def tree_superclasses(meta_dir: Path) -> dict[str, str]:
    """class wnid -> mixed_10 superclass, for the classes whose tree path meets one.

    A class counts under a superclass when the superclass is a strict ancestor of it
    on the tree (the library's ``descendants_all`` excludes the node itself).
    """
    parent, by_wnid = tree_parents(meta_dir), {w: n for n, w in MIXED_10.items()}
    owner = {}
    for cid in imagenet1k_classes(meta_dir):
        node, found = cid, []
        while node in parent:
            node = parent[node]
            if node in by_wnid:
                found.append(by_wnid[node])
        assert len(found) <= 1, (cid, found)  # the library asserts superclasses are disjoint
        if found:
            owner[cid] = found[0]
    return owner


@pytest.fixture(scope="module")
def meta_dir(shared_data) -> Path:
    return shared_data / "imagenet-meta"


def test_counts_reproduce_the_paper():
    h = load_preset(NAME)
    assert h.superclass_names == list(MIXED_10)
    assert dict(h.summary_rows()) == COUNTS
    assert h.num_classes == 253
    assert COUNTS["bird"] == 52 and COUNTS["dog"] == 116  # Wen et al. 2022


def test_preset_matches_the_library_rule_class_by_class(meta_dir):
    h = load_preset(NAME)
    assert {s.name: s.synsets for s in h.superclasses} == {n: (w,) for n, w in MIXED_10.items()}
    built = {sub.id: s.name for s in h.superclasses for sub in s.subclasses}
    assert built == tree_superclasses(meta_dir)


def test_each_pin_is_the_tree_parent(meta_dir):
    spec = SuperclassingSpec.load(PRESET_DIR / f"{NAME}.yaml")
    parent = tree_parents(meta_dir)
    wordnet = WordNet.load("imagenet", meta_dir)
    assert len(spec.parents) == 5
    for wnid, pinned in spec.parents:
        assert parent[wnid] == pinned, wnid
        assert len(wordnet.parents[wnid]) > 1, wnid  # a choice the DAG does not make


def test_without_pins_every_path_counts(meta_dir):
    """Following every is-a path (the project's default) does not give the paper's counts,
    and makes the minivan both a car and a truck."""
    spec = SuperclassingSpec.load(PRESET_DIR / f"{NAME}.yaml")
    classes, wordnet = imagenet1k_classes(meta_dir), WordNet.load("imagenet", meta_dir)
    with pytest.raises(HierarchyError, match=r"n03770679 \(minivan\) descends from "
                                             r"\['car', 'truck'\]"):
        build_hierarchy(dataclasses.replace(spec, parents=()), classes, wordnet)
    spec = dataclasses.replace(spec, parents=(), resolve=(("n03770679", "car"),))
    h = build_hierarchy(spec, classes, wordnet)
    assert dict(h.summary_rows()) == {**COUNTS, "dog": 118, "bird": 59, "feline": 13,
                                      "fruit": 16}


def test_pin_must_name_a_parent(meta_dir):
    spec = SuperclassingSpec.from_dict({"name": "bad", "superclasses": {"dog": "n02084071"},
                                        "parents": {"n02090827": "n01503061"}})
    with pytest.raises(HierarchyError, match=r"n01503061 is not a parent of n02090827"):
        build_hierarchy(spec, ["n02091032"], WordNet.load("imagenet", meta_dir))


@pytest.mark.parametrize("source", ["imagenet", "wordnet3"])
def test_regenerates_byte_for_byte(source, shared_data, tmp_path):
    if source == "wordnet3" and not HAS_WORDNET3:
        pytest.skip("WordNet 3.0 database absent")
    path = WORDNET_DB_DIR if source == "wordnet3" else shared_data / "imagenet-meta"
    _, out = build_preset(NAME, wordnet_source=source, wordnet_path=path,
                          class_ids=read_class_ids(shared_data / "imagenet-meta" /
                                                   "synset_words.txt"),
                          output=tmp_path / f"{NAME}.json")
    assert out.read_bytes() == (PRESET_DIR / f"{NAME}.json").read_bytes()
