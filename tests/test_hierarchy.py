"""Hierarchy: label maps, JSON round trip, and validation errors naming the culprit."""

import pytest

from supersub_tf import Hierarchy, HierarchyError, Subclass, Superclass


def make(*groups, **kwargs) -> Hierarchy:
    return Hierarchy([Superclass(name, tuple(Subclass(i, i.upper()) for i in ids))
                      for name, ids in groups], name="toy", **kwargs)


def test_label_maps_round_trip():
    h = make(("a", ["a1", "a2"]), ("b", ["b1"]), ("c", ["c1", "c2", "c3"]))
    assert h.num_superclasses == 3 and h.num_classes == 6
    assert h.class_ids == ["a1", "a2", "b1", "c1", "c2", "c3"]
    for fine in range(h.num_classes):
        sup, sub = h.split_label(fine)
        assert h.join_label(sup, sub) == fine
    assert h.split_label(4) == (2, 1)
    assert h.join_label("c", 2) == 5
    assert h.fine_labels_of("c").tolist() == [3, 4, 5]
    assert h.fine_label("b1") == 2 and "b1" in h and "zz" not in h
    assert h.superclass_index("b") == 1
    assert h.fine_to_superclass.tolist() == [0, 0, 1, 2, 2, 2]
    assert h.fine_to_subclass.tolist() == [0, 1, 0, 0, 1, 2]


def test_json_round_trip(tmp_path):
    h = make(("a", ["a1"]), ("b", ["b1", "b2"]), metadata={"source": "test"})
    h.save(tmp_path / "h.json")
    loaded = Hierarchy.load(tmp_path / "h.json")
    assert loaded == h and loaded.metadata == {"source": "test"}
    assert loaded.to_json() == h.to_json()


@pytest.mark.parametrize("groups, known, match", [
    ((("a", ["x", "y"]), ("b", ["y"])), None, "'y'.*two superclasses, 'a' and 'b'"),
    ((("a", ["x", "x"]),), None, "'x'.*twice in superclass 'a'"),
    ((("a", ["x"]), ("b", [])), None, "superclass 'b' has no subclasses"),
    ((("a", ["x"]), ("a", ["y"])), None, "superclass name 'a' appears twice"),
    ((("a", ["x", "nope"]),), ["x"], "unknown to the dataset.*'nope'"),
])
def test_invalid_hierarchies_name_the_culprit(groups, known, match):
    with pytest.raises(HierarchyError, match=match):
        make(*groups, known_ids=known)


def test_empty_and_out_of_range():
    with pytest.raises(HierarchyError, match="no superclasses"):
        Hierarchy([])
    h = make(("a", ["x"]))
    with pytest.raises(HierarchyError, match="out of range"):
        h.split_label(1)
    with pytest.raises(HierarchyError, match="unknown superclass 'q'"):
        h.superclass_index("q")
    with pytest.raises(HierarchyError, match="not in hierarchy"):
        h.fine_label("q")


def test_load_errors(tmp_path):
    with pytest.raises(HierarchyError, match="not found"):
        Hierarchy.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(HierarchyError, match="bad.json: not valid JSON"):
        Hierarchy.load(bad)
    bad.write_text('{"superclasses": [{"name": "a"}]}')
    with pytest.raises(HierarchyError, match="malformed"):
        Hierarchy.load(bad)
