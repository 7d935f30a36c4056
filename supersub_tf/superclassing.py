"""Superclassing: grouping a dataset's classes into superclasses by WordNet ancestry.

A *superclassing spec* names each superclass and either the WordNet synsets it covers
(``reptile_amphibian: [n01661091, n01627424]``) or an explicit list of subclass ids
(CIFAR-100's coarse classes). :func:`build_hierarchy` assigns every class of a dataset
to the one superclass it descends from, and returns a validated :class:`Hierarchy`.

Spec files are YAML or JSON. The compact form maps names to synsets::

    name: my_animals
    classes: imagenet1k            # imagenet1k | tiny_imagenet | imagenette | explicit
    superclasses:
      bird: n01503061
      reptile_amphibian: [n01661091, n01627424]

The full form gives each superclass as a mapping with ``synsets``, optional ``exclude``
(synsets whose descendants are left out) or ``subclasses`` (explicit ids, with optional
``names``). A top-level ``resolve: {wnid: superclass}`` settles a class that descends
from two superclasses' synsets, which is otherwise an error.

A top-level ``parents: {wnid: parent_wnid}`` keeps only the named one of a synset's
WordNet parents. WordNet is a graph (a domestic cat is both a cat and a domestic
animal) and a class normally counts under every ancestor; a library that builds a
*tree* instead keeps one parent per synset, by an order that neither WordNet source
records (the robustness library's ImageNetHierarchy keeps the parent on a synset's
last line of ImageNet's ``wordnet.is_a.txt``). Pinning the synsets whose choice moves
a class reproduces such a tree from either source (preset ``robustness_mixed_10``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from supersub_tf.errors import HierarchyError
from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass
from supersub_tf.wordnet import WordNet

CLASS_SOURCES = ("imagenet1k", "tiny_imagenet", "imagenette", "explicit")


@dataclasses.dataclass(frozen=True)
class SuperclassSpec:
    """One superclass of a spec: synsets to include/exclude, or explicit subclass ids."""

    name: str
    synsets: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    subclasses: tuple[str, ...] = ()
    names: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class SuperclassingSpec:
    """A named superclassing: its superclasses, class source and conflict rules."""

    name: str
    superclasses: tuple[SuperclassSpec, ...]
    classes: str = "imagenet1k"
    description: str = ""
    resolve: tuple[tuple[str, str], ...] = ()
    parents: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "spec") -> SuperclassingSpec:
        """Parses the compact or full YAML/JSON form (see the module docstring)."""
        if not isinstance(data, dict) or "superclasses" not in data:
            raise HierarchyError(f"{source}: a superclassing spec needs a 'superclasses' entry")
        raw = data["superclasses"]
        if isinstance(raw, dict):
            raw = [{"name": k, **(v if isinstance(v, dict) else {"synsets": v})}
                   for k, v in raw.items()]
        supers = []
        for entry in raw:
            if not isinstance(entry, dict) or "name" not in entry:
                raise HierarchyError(f"{source}: each superclass needs a name, got {entry!r}")
            unknown = set(entry) - {"name", "synsets", "exclude", "subclasses", "names"}
            if unknown:
                raise HierarchyError(f"{source}: superclass {entry['name']!r} has unknown "
                                     f"keys {sorted(unknown)}")
            names = entry.get("names") or {}
            supers.append(SuperclassSpec(
                name=str(entry["name"]), synsets=_as_tuple(entry.get("synsets")),
                exclude=_as_tuple(entry.get("exclude")),
                subclasses=_as_tuple(entry.get("subclasses")),
                names=tuple((str(k), str(v)) for k, v in names.items())))
            if not supers[-1].synsets and not supers[-1].subclasses:
                raise HierarchyError(f"{source}: superclass {entry['name']!r} lists neither "
                                     "synsets nor subclasses")
        classes = str(data.get("classes", "imagenet1k"))
        if classes not in CLASS_SOURCES:
            raise HierarchyError(f"{source}: classes must be one of {CLASS_SOURCES}, "
                                 f"got {classes!r}")
        return cls(name=str(data.get("name") or Path(source).stem), superclasses=tuple(supers),
                   classes=classes, description=str(data.get("description", "")),
                   resolve=tuple((str(k), str(v)) for k, v in (data.get("resolve") or {}).items()),
                   parents=tuple((str(k), str(v)) for k, v in (data.get("parents") or {}).items()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> SuperclassingSpec:
        """Reads a spec from a ``.yaml``/``.yml``/``.json`` file."""
        p = Path(path)
        if not p.is_file():
            raise HierarchyError(f"superclassing spec not found: {p}")
        try:
            text = p.read_text(encoding="utf-8")
            data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (yaml.YAMLError, json.JSONDecodeError) as err:
            raise HierarchyError(f"{p}: cannot parse ({err})") from None
        return cls.from_dict(data, source=str(p))

    def explicit_class_ids(self) -> list[str]:
        """The subclass ids the spec lists itself, in order: the whole class list of a
        ``classes: explicit`` spec (CIFAR-100's coarse classes). The other ``classes``
        values name a dataset, whose list :func:`supersub_tf.data.spec_class_ids` reads."""
        return [cid for s in self.superclasses for cid in s.subclasses]


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split("+") if v.strip())
    return tuple(str(v) for v in value)


def _pin_parents(spec: SuperclassingSpec, wordnet: WordNet) -> WordNet:
    """``wordnet`` with each synset of ``spec.parents`` keeping only its pinned parent."""
    parents = dict(wordnet.parents)
    for wnid, parent in spec.parents:
        if parent not in parents.get(wnid, ()):
            raise HierarchyError(
                f"{spec.name}: parents pin {wnid} -> {parent}: {parent} is not a parent of "
                f"{wnid} in {wordnet.source}; its parents are {sorted(parents.get(wnid, ()))}")
        parents[wnid] = frozenset([parent])
    return WordNet(parents, wordnet.names, wordnet.source)


def _owners(spec: SuperclassingSpec, cid: str, explicit: dict[str, str],
            wordnet: WordNet | None) -> list[str]:
    """The superclasses that take class ``cid``: its explicit one, else those whose synsets
    it descends from (and none of whose exclusions); no WordNet: none."""
    if cid in explicit:
        return [explicit[cid]]
    if wordnet is None:
        return []
    return [s.name for s in spec.superclasses
            if any(wordnet.is_a(cid, syn) for syn in s.synsets)
            and not any(wordnet.is_a(cid, ex) for ex in s.exclude)]


def classes_not_in_data(spec: SuperclassingSpec, class_ids: Sequence[str],
                        wordnet: WordNet | None = None) -> list[tuple[str, str, str]]:
    """``(wnid, name, superclass)`` of each of ``class_ids`` (classes of the spec's class
    list that a dataset lacks) that a superclass of the spec would take.

    What a spec built over a dataset's classes leaves out of its superclasses; a class
    two superclasses would take names both (``dog or pet``) unless ``resolve`` settles it.
    """
    explicit = {cid: s.name for s in spec.superclasses for cid in s.subclasses}
    if any(s.synsets for s in spec.superclasses) and wordnet is not None:
        wordnet.check_known([c for c in class_ids if c not in explicit], what="class wnid")
        if spec.parents:
            wordnet = _pin_parents(spec, wordnet)
    else:
        wordnet = None
    resolve = dict(spec.resolve)
    given = {cid: name for s in spec.superclasses for cid, name in s.names}
    found = []
    for cid in dict.fromkeys(class_ids):
        owners = [resolve[cid]] if cid in resolve else _owners(spec, cid, explicit, wordnet)
        if owners:
            name = given.get(cid) or (wordnet.name(cid) if wordnet is not None else cid)
            found.append((cid, name, " or ".join(owners)))
    return found


def build_hierarchy(spec: SuperclassingSpec, class_ids: Sequence[str],
                    wordnet: WordNet | None = None) -> Hierarchy:
    """Assigns each of ``class_ids`` to its superclass and returns the hierarchy.

    Classes descending from no superclass are left out, and listed in the hierarchy's
    ``left_out`` (the data sources report them). Within a superclass, WordNet-
    assigned subclasses are ordered by wnid, so the result does not depend on the order
    of the dataset's class list; explicit subclass lists keep their order.

    Raises:
        HierarchyError: Classes descend from two superclasses and no ``resolve`` rule
            settles them (all of them named at once); a resolve rule names an unknown
            superclass; a ``parents`` pin names a synset that is not a parent; a
            superclass ends up empty; an explicit subclass id is not among ``class_ids``.
        DataError: A synset or class wnid is absent from the WordNet metadata.
    """
    known = list(dict.fromkeys(class_ids))
    resolve = dict(spec.resolve)
    names = [s.name for s in spec.superclasses]
    for wnid, target in resolve.items():
        if target not in names:
            raise HierarchyError(f"{spec.name}: resolve rule {wnid} -> {target!r} names an "
                                 f"unknown superclass; superclasses are {names}")
    members: dict[str, list[str]] = {s.name: [] for s in spec.superclasses}
    explicit = {cid: s.name for s in spec.superclasses for cid in s.subclasses}
    needs_wordnet = any(s.synsets for s in spec.superclasses)
    if needs_wordnet:
        if wordnet is None:
            raise HierarchyError(f"{spec.name}: defines superclasses by synsets, so it "
                                 "needs WordNet metadata")
        wordnet.check_known([w for s in spec.superclasses for w in s.synsets + s.exclude],
                            what=f"synset of spec {spec.name!r}")
        wordnet.check_known([c for c in known if c not in explicit], what="class wnid")
        if spec.parents:
            wordnet = _pin_parents(spec, wordnet)
    conflicts, uncovered = [], []
    for cid in known:
        owners = _owners(spec, cid, explicit, wordnet if needs_wordnet else None)
        if len(owners) > 1:
            if cid not in resolve:
                conflicts.append(f"{cid} ({wordnet.name(cid)}) descends from {owners}")
                continue
            owners = [resolve[cid]]
        if owners:
            members[owners[0]].append(cid)
        else:
            uncovered.append(cid)
    if conflicts:  # every one at once, not one per attempt
        raise HierarchyError(
            f"{spec.name}: {len(conflicts)} class(es) descend from two or more superclasses: "
            + "; ".join(conflicts) + ". Add 'resolve: {<wnid>: <superclass>}' entries to the "
            "spec for each")
    missing = [cid for cid in explicit if cid not in set(known)]
    if missing:
        raise HierarchyError(f"{spec.name}: subclass id {missing[0]!r} (superclass "
                             f"{explicit[missing[0]]!r}) is not a class of the dataset")
    superclasses = []
    for s in spec.superclasses:
        ids = members[s.name] if s.subclasses else sorted(members[s.name])
        given = dict(s.names)
        subs = tuple(Subclass(id=c, name=given.get(c) or (wordnet.name(c) if wordnet is not None
                                                         and c in wordnet else c)) for c in ids)
        superclasses.append(Superclass(name=s.name, subclasses=subs, synsets=s.synsets))
    metadata = {"description": spec.description, "classes": spec.classes}
    if needs_wordnet:
        metadata["exclude"] = {s.name: list(s.exclude) for s in spec.superclasses if s.exclude}
        if spec.parents:
            metadata["parents"] = dict(spec.parents)
    left_out = [(c, wordnet.name(c) if wordnet is not None and c in wordnet else c)
                for c in uncovered]
    return Hierarchy(superclasses, name=spec.name, known_ids=known, metadata=metadata,
                     left_out=left_out)
