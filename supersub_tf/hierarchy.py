"""The two-level class hierarchy: superclasses, each with its own ordered subclasses.

A :class:`Hierarchy` is the single source of truth for labels in this project. Every
image carries three labels derived from it:

* ``fine``: the global subclass index, ``0 .. num_classes - 1``, superclass by superclass;
* ``superclass``: the index of its superclass;
* ``subclass``: its local index inside that superclass (what a specialist predicts).

Hierarchies are validated when constructed, so a subclass listed twice, an empty
superclass or an id the dataset does not know fails at once with the culprit named.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from supersub_tf.atomic import atomic_write_text
from supersub_tf.errors import HierarchyError


@dataclasses.dataclass(frozen=True)
class Subclass:
    """One fine class: a stable id (e.g. a WordNet ID) and a human-readable name."""

    id: str
    name: str


@dataclasses.dataclass(frozen=True)
class Superclass:
    """A superclass: its name, its ordered subclasses and the synsets that define it."""

    name: str
    subclasses: tuple[Subclass, ...]
    synsets: tuple[str, ...] = ()


class Hierarchy:
    """Ordered superclasses with ordered subclasses, and the label maps between levels.

    Args:
        superclasses: The superclasses in label order.
        name: A short name for the hierarchy (the preset name).
        known_ids: If given, every subclass id must be in it (e.g. the wnids a dataset
            provides); an id outside it is an error.
        metadata: Free-form provenance (how the hierarchy was built), kept in its JSON.
        left_out: Classes of the dataset it was built over that fall in no superclass
            (wnid and name), for the sources to report; not saved in its JSON.

    Raises:
        HierarchyError: On an empty hierarchy or superclass, a duplicate superclass name,
            a subclass listed twice (in one or in two superclasses) or an unknown id.
    """

    def __init__(self, superclasses: Sequence[Superclass], name: str = "",
                 known_ids: Iterable[str] | None = None,
                 metadata: dict[str, Any] | None = None,
                 left_out: Sequence[tuple[str, str]] = ()) -> None:
        self.name = name
        self.superclasses = tuple(superclasses)
        self.metadata = dict(metadata or {})
        self.left_out = tuple(left_out)
        self._validate(known_ids)
        self.subclasses = tuple(s for sup in self.superclasses for s in sup.subclasses)
        self._fine_by_id = {s.id: i for i, s in enumerate(self.subclasses)}
        self.fine_to_superclass = np.array(
            [k for k, sup in enumerate(self.superclasses) for _ in sup.subclasses], np.int32)
        self.fine_to_subclass = np.array(
            [j for sup in self.superclasses for j in range(len(sup.subclasses))], np.int32)
        offsets = np.cumsum([0] + [len(sup.subclasses) for sup in self.superclasses])
        self._offsets = offsets.astype(np.int32)

    def _validate(self, known_ids: Iterable[str] | None) -> None:
        label = f"hierarchy {self.name!r}" if self.name else "hierarchy"
        if not self.superclasses:
            raise HierarchyError(f"{label} has no superclasses")
        seen_names: set[str] = set()
        owner: dict[str, str] = {}
        for sup in self.superclasses:
            if sup.name in seen_names:
                raise HierarchyError(f"{label}: superclass name {sup.name!r} appears twice")
            seen_names.add(sup.name)
            if not sup.subclasses:
                raise HierarchyError(f"{label}: superclass {sup.name!r} has no subclasses")
            for sub in sup.subclasses:
                if not sub.id:
                    raise HierarchyError(f"{label}: superclass {sup.name!r} has a subclass with "
                                         "an empty id")
                if sub.id in owner:
                    where = ("twice in superclass " + repr(sup.name) if owner[sub.id] == sup.name
                             else f"in two superclasses, {owner[sub.id]!r} and {sup.name!r}")
                    raise HierarchyError(f"{label}: subclass {sub.id!r} ({sub.name}) is listed "
                                         f"{where}")
                owner[sub.id] = sup.name
        if known_ids is not None:
            known = set(known_ids)
            unknown = [i for i in owner if i not in known]
            if unknown:
                raise HierarchyError(f"{label}: {len(unknown)} subclass id(s) unknown to the "
                                     f"dataset, first {unknown[:5]} (superclass "
                                     f"{owner[unknown[0]]!r})")

    # ----------------------------------------------------------------------------- sizes
    @property
    def num_superclasses(self) -> int:
        """Number of superclasses."""
        return len(self.superclasses)

    @property
    def num_classes(self) -> int:
        """Number of fine classes (all subclasses of all superclasses)."""
        return len(self.subclasses)

    @property
    def superclass_names(self) -> list[str]:
        """Superclass names in label order."""
        return [s.name for s in self.superclasses]

    @property
    def class_ids(self) -> list[str]:
        """Subclass ids in global fine-label order."""
        return [s.id for s in self.subclasses]

    @property
    def class_names(self) -> list[str]:
        """Subclass names in global fine-label order."""
        return [s.name for s in self.subclasses]

    def num_subclasses(self, superclass: int | str) -> int:
        """Number of subclasses of one superclass (by index or name)."""
        return len(self.superclasses[self.superclass_index(superclass)].subclasses)

    # ----------------------------------------------------------------------------- maps
    def superclass_index(self, superclass: int | str) -> int:
        """Index of a superclass given by index or name; raises on an unknown one."""
        if isinstance(superclass, (int, np.integer)):
            if not 0 <= superclass < self.num_superclasses:
                raise HierarchyError(f"superclass index {superclass} out of range "
                                     f"0..{self.num_superclasses - 1}")
            return int(superclass)
        for k, sup in enumerate(self.superclasses):
            if sup.name == superclass:
                return k
        raise HierarchyError(f"unknown superclass {superclass!r}; this hierarchy has "
                             f"{self.superclass_names}")

    def fine_label(self, class_id: str) -> int:
        """Global fine label of a subclass id; raises HierarchyError for an unknown id."""
        try:
            return self._fine_by_id[class_id]
        except KeyError:
            raise HierarchyError(f"class id {class_id!r} is not in hierarchy "
                                 f"{self.name!r}") from None

    def __contains__(self, class_id: object) -> bool:
        return class_id in self._fine_by_id

    def split_label(self, fine: int) -> tuple[int, int]:
        """Maps a global fine label to ``(superclass index, local subclass index)``."""
        if not 0 <= fine < self.num_classes:
            raise HierarchyError(f"fine label {fine} out of range 0..{self.num_classes - 1}")
        return int(self.fine_to_superclass[fine]), int(self.fine_to_subclass[fine])

    def join_label(self, superclass: int | str, subclass: int) -> int:
        """Maps ``(superclass, local subclass index)`` to the global fine label."""
        k = self.superclass_index(superclass)
        if not 0 <= subclass < len(self.superclasses[k].subclasses):
            raise HierarchyError(f"subclass index {subclass} out of range for superclass "
                                 f"{self.superclasses[k].name!r}")
        return int(self._offsets[k] + subclass)

    def fine_labels_of(self, superclass: int | str) -> np.ndarray:
        """Global fine labels of one superclass's subclasses, in local order."""
        k = self.superclass_index(superclass)
        return np.arange(self._offsets[k], self._offsets[k + 1], dtype=np.int32)

    # ----------------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description; :meth:`from_dict` inverts it."""
        return {
            "name": self.name,
            "metadata": self.metadata,
            "superclasses": [
                {"name": sup.name, "synsets": list(sup.synsets),
                 "subclasses": [{"id": s.id, "name": s.name} for s in sup.subclasses]}
                for sup in self.superclasses
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], known_ids: Iterable[str] | None = None,
                  source: str = "hierarchy") -> Hierarchy:
        """Builds a hierarchy from :meth:`to_dict` output; ``source`` names it in errors."""
        try:
            superclasses = [
                Superclass(name=str(sup["name"]), synsets=tuple(sup.get("synsets", ())),
                           subclasses=tuple(Subclass(id=str(s["id"]), name=str(s["name"]))
                                            for s in sup["subclasses"]))
                for sup in data["superclasses"]
            ]
        except (KeyError, TypeError) as err:
            raise HierarchyError(f"{source}: malformed hierarchy JSON ({err!r}); expected "
                                 "superclasses: [{name, subclasses: [{id, name}]}]") from None
        return cls(superclasses, name=str(data.get("name", "")), known_ids=known_ids,
                   metadata=data.get("metadata"))

    def to_json(self) -> str:
        """Deterministic JSON text (stable key order, two-space indent, final newline)."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        """Writes the hierarchy as JSON, atomically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Hierarchy:
        """Reads a hierarchy saved by :meth:`save`."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise HierarchyError(f"hierarchy file not found: {path}") from None
        except json.JSONDecodeError as err:
            raise HierarchyError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data, source=str(path))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Hierarchy) and self.name == other.name
                and self.superclasses == other.superclasses)

    def __hash__(self) -> int:
        return hash((self.name, self.superclasses))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s.name}={len(s.subclasses)}" for s in self.superclasses)
        return f"Hierarchy({self.name!r}: {sizes})"

    def summary_rows(self) -> list[tuple[str, int]]:
        """``(superclass name, number of subclasses)`` rows, for tables."""
        return [(s.name, len(s.subclasses)) for s in self.superclasses]
