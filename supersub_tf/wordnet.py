"""The WordNet noun hierarchy, read from ImageNet's metadata or WordNet 3.0's database.

ImageNet names its classes by WordNet IDs (``n02085620`` is noun synset offset 02085620
of WordNet 3.0). Two files describe the same noun hierarchy:

* ImageNet's ``wordnet.is_a.txt`` (``parent child`` per line) and ``words.txt``
  (``wnid<TAB>names``), as distributed with ImageNet;
* WordNet 3.0's ``data.noun`` (``apt-get install wordnet-base``), whose hypernym
  pointers (``@`` and instance ``@i``) give the same parent links.

:class:`WordNet` loads either and answers "which synsets is this one a kind of?".
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from supersub_tf.errors import DataError

WORDNET_DB_DIR = "/usr/share/wordnet"


class WordNet:
    """A noun hierarchy: parent links and names of synsets keyed by wnid.

    Args:
        parents: wnid -> wnids of its direct hypernyms.
        names: wnid -> human-readable names (comma-separated lemmas, ImageNet style).
        source: Where it was read from, for error messages and provenance.
    """

    def __init__(self, parents: dict[str, frozenset[str]], names: dict[str, str],
                 source: str) -> None:
        self.parents = parents
        self.names = names
        self.source = source

    def __contains__(self, wnid: object) -> bool:
        return wnid in self.names

    def name(self, wnid: str) -> str:
        """The synset's first lemma (``n02085620`` -> ``Chihuahua``)."""
        self.check_known([wnid])
        return self.names[wnid].split(",")[0].strip()

    def check_known(self, wnids: list[str], what: str = "wnid") -> None:
        """Raises DataError naming the first wnid this WordNet does not have."""
        for wnid in wnids:
            if wnid not in self.names:
                raise DataError(f"{what} {wnid!r} is not in the WordNet metadata read from "
                                f"{self.source}")

    @functools.lru_cache(maxsize=None)
    def ancestors(self, wnid: str) -> frozenset[str]:
        """All hypernyms of ``wnid``, transitively, excluding ``wnid`` itself."""
        found: set[str] = set()
        stack = list(self.parents.get(wnid, ()))
        while stack:
            parent = stack.pop()
            if parent not in found:
                found.add(parent)
                stack.extend(self.parents.get(parent, ()))
        return frozenset(found)

    def is_a(self, wnid: str, synset: str) -> bool:
        """True if ``wnid`` is ``synset`` or descends from it."""
        return wnid == synset or synset in self.ancestors(wnid)

    def depth_to(self, wnid: str, synset: str) -> int | None:
        """Shortest number of is-a steps from ``wnid`` up to ``synset`` (None if unrelated)."""
        frontier, depth, seen = {wnid}, 0, set()
        while frontier:
            if synset in frontier:
                return depth
            seen |= frontier
            frontier = {p for w in frontier for p in self.parents.get(w, ())} - seen
            depth += 1
        return None

    # --------------------------------------------------------------------------- loaders
    @classmethod
    def from_imagenet_meta(cls, meta_dir: str | os.PathLike) -> WordNet:
        """Reads ImageNet's ``wordnet.is_a.txt`` and ``words.txt`` from ``meta_dir``."""
        meta = Path(meta_dir)
        is_a, words = meta / "wordnet.is_a.txt", meta / "words.txt"
        for f in (is_a, words):
            if not f.is_file():
                raise DataError(f"ImageNet metadata file missing: {f} (expected ImageNet's "
                                "wordnet.is_a.txt and words.txt in this folder)")
        parents: dict[str, set[str]] = {}
        with open(is_a, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise DataError(f"{is_a}:{line_no}: expected 'parent_wnid child_wnid', "
                                    f"got {line.strip()!r}")
                parents.setdefault(fields[1], set()).add(fields[0])
        names = _read_words(words)
        return cls({k: frozenset(v) for k, v in parents.items()}, names, str(meta))

    @classmethod
    def from_wordnet_db(cls, db_dir: str | os.PathLike = WORDNET_DB_DIR) -> WordNet:
        """Reads WordNet 3.0's ``data.noun`` (hypernym and instance-hypernym pointers)."""
        data_noun = Path(db_dir) / "data.noun"
        if not data_noun.is_file():
            raise DataError(f"WordNet database not found: {data_noun} (install it with "
                            "'apt-get install wordnet-base' or pass its folder)")
        parents: dict[str, frozenset[str]] = {}
        names: dict[str, str] = {}
        with open(data_noun, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(" "):  # licence header
                    continue
                fields = line.split(" ")
                wnid = "n" + fields[0]
                n_words = int(fields[3], 16)
                lemmas = [fields[4 + 2 * i].replace("_", " ") for i in range(n_words)]
                names[wnid] = ", ".join(_strip_marker(lemma) for lemma in lemmas)
                i = 4 + 2 * n_words
                n_pointers = int(fields[i])
                hypernyms = set()
                for p in range(n_pointers):
                    symbol, offset, pos = fields[i + 1 + 4 * p: i + 4 + 4 * p]
                    if symbol in ("@", "@i") and pos == "n":
                        hypernyms.add("n" + offset)
                if hypernyms:
                    parents[wnid] = frozenset(hypernyms)
        return cls(parents, names, str(data_noun))

    @classmethod
    def load(cls, source: str = "auto", path: str | os.PathLike | None = None) -> WordNet:
        """Loads ``source`` = ``"imagenet"`` (metadata folder) or ``"wordnet3"`` (database).

        ``path`` defaults to ``$SUPERSUB_DATA_DIR/imagenet-meta`` and
        ``/usr/share/wordnet`` respectively. ``"auto"`` takes ImageNet's metadata when it
        is there, else WordNet 3.0 (on Colab: ``apt-get install wordnet-base``); both
        describe the same noun hierarchy.
        """
        from supersub_tf.paths import data_dir

        if source == "auto":
            meta = Path(path) if path else data_dir() / "imagenet-meta"
            if (meta / "wordnet.is_a.txt").is_file() or not (
                    Path(WORDNET_DB_DIR) / "data.noun").is_file():
                return cls.from_imagenet_meta(meta)
            return cls.from_wordnet_db()
        if source == "imagenet":
            return cls.from_imagenet_meta(path or data_dir() / "imagenet-meta")
        if source == "wordnet3":
            return cls.from_wordnet_db(path or WORDNET_DB_DIR)
        raise DataError(f"unknown WordNet source {source!r}; use 'imagenet' or 'wordnet3'")


def _strip_marker(lemma: str) -> str:
    """Drops WordNet's adjective-position markers such as ``(p)`` from a lemma."""
    return lemma.split("(")[0] if lemma.endswith(")") else lemma


def _read_words(path: Path) -> dict[str, str]:
    names: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            wnid, sep, words = line.partition("\t")
            if not sep:
                wnid, _, words = line.partition(" ")
            if not wnid.startswith("n"):
                raise DataError(f"{path}:{line_no}: expected 'wnid<TAB>names', got {line!r}")
            names[wnid] = words.strip()
    return names


def read_class_list(path: str | os.PathLike) -> list[str]:
    """Reads class wnids, one per line, first token (``wnids.txt``, ``synset_words.txt``)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"class list not found: {p}")
    wnids = [line.split()[0] for line in p.read_text(encoding="utf-8").splitlines()
             if line.strip()]
    if not wnids:
        raise DataError(f"class list {p} is empty")
    return wnids
