"""Labelled image lists: what file-based sources produce before tf.data decodes them.

A source lists its images as :class:`Examples`: encoded images (file paths, or the bytes
of zip members) or decoded arrays, each with its global fine label. Working on lists
first lets every source share one implementation of the steps that come before
decoding: seeded held-out splits, per-class caps, filtering to one superclass, and
checking that every file decodes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np

from supersub_tf.atomic import atomic_write_text
from supersub_tf.errors import DataError
from supersub_tf.paths import cache_dir

KINDS = ("path", "bytes", "array")


@dataclasses.dataclass
class Examples:
    """Images of one split with their fine labels.

    Attributes:
        images: File paths (``kind="path"``), encoded image bytes (``"bytes"``), or a
            ``uint8 [N, H, W, 3]`` array (``"array"``).
        fine: Global fine labels, ``int32 [N]``.
        kind: One of ``path``, ``bytes``, ``array``.
        names: A name per image for error messages (its path or archive member).
        fingerprint: Identity of the underlying files (paths, sizes, times), used to
            cache the decode check; empty disables that cache.
    """

    images: np.ndarray
    fine: np.ndarray
    kind: str
    names: np.ndarray
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        self.fine = np.asarray(self.fine, np.int32)
        self.names = np.asarray(self.names, dtype=object)
        if self.kind != "array":
            self.images = np.asarray(self.images, dtype=object)
        if not len(self.images) == len(self.fine) == len(self.names):
            raise ValueError("images, fine and names must have the same length")

    def __len__(self) -> int:
        return len(self.fine)

    def take(self, index: np.ndarray | Sequence[int], tag: str = "") -> Examples:
        """The examples at ``index``; ``tag`` extends the fingerprint."""
        index = np.asarray(index, dtype=np.int64)
        fp = _hash(self.fingerprint, tag, index.tobytes()) if self.fingerprint else ""
        return Examples(self.images[index], self.fine[index], self.kind, self.names[index], fp)

    def with_labels(self, labels: Sequence[int] | np.ndarray) -> Examples:
        """Only the examples whose fine label is in ``labels``."""
        return self.take(np.flatnonzero(np.isin(self.fine, np.asarray(labels))), "labels")


def _hash(*parts: str | bytes) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def fingerprint_of(*parts: str | bytes) -> str:
    """A short stable fingerprint of the given strings (e.g. file path, size, mtime)."""
    return _hash(*parts)


def stratified_split(fine: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Splits indices class by class into ``len(fractions) + 1`` parts.

    Each class is shuffled with a generator seeded by ``seed`` and the class label, so a
    class's split does not change when other classes are added or removed. Part ``i``
    gets ``round(fraction_i * n)`` images of a class of ``n`` (at least one when the
    fraction is positive and the class has two images or more); the last part gets
    the rest.
    """
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for label in np.unique(fine):
        idx = np.flatnonzero(fine == label)
        rng = np.random.default_rng([seed, int(label)])
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for i, frac in enumerate(fractions):
            count = int(round(frac * len(idx)))
            if frac > 0 and count == 0 and len(idx) - start > 1:
                count = 1
            parts[i].append(idx[start:start + count])
            start += count
        parts[-1].append(idx[start:])
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def cap_per_class(examples: Examples, max_per_class: int) -> Examples:
    """At most ``max_per_class`` examples of each class (the first ones, in list order)."""
    if max_per_class <= 0:
        return examples
    keep = np.concatenate([np.flatnonzero(examples.fine == c)[:max_per_class]
                           for c in np.unique(examples.fine)]) if len(examples) else []
    return examples.take(np.sort(np.asarray(keep, np.int64)), f"cap{max_per_class}")


def decode_image(encoded, channels: int = 3):
    """Decodes JPEG/PNG/GIF/BMP bytes to ``uint8 [H, W, 3]``; greyscale becomes RGB.

    EXIF orientation policy: **ignored** here, the pixels are used as stored, as training
    and evaluation use them (ImageNet and Tiny ImageNet images carry no rotation). This
    is the one decoder of training, evaluation and the SavedModel's graph; every path
    that classifies a photo (``predict``'s :func:`supersub_tf.predict.read_image`, the
    SavedModel's ``image_bytes``, the LiteRT runtime's reader) then applies the EXIF
    orientation, so phone photos are classified upright.
    """
    import tensorflow as tf

    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return image


CACHE_HINT = ("decode checks are cached in $SUPERSUB_CACHE_DIR/verified/ (default "
              "~/.cache/supersub_tf/verified/); delete that folder to check every file again")


def _file_states(paths: np.ndarray) -> list[list[int] | None]:
    """``[size, mtime_ns]`` of each file, None for a file that does not exist."""
    states: list[list[int] | None] = []
    for path in paths:
        try:
            stat = os.stat(path)
            states.append([stat.st_size, stat.st_mtime_ns])
        except OSError:
            states.append(None)
    return states


def _decodes(examples: Examples, index: np.ndarray) -> np.ndarray:
    """Whether each image at ``index`` decodes (one parallel tf.data pass)."""
    import tensorflow as tf

    def check(i, ref):
        data = tf.io.read_file(ref) if examples.kind == "path" else ref
        return i, tf.shape(decode_image(data))[0]

    refs = (examples.images[index].astype(str) if examples.kind == "path"
            else list(examples.images[index]))
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(index)), refs))
    ds = ds.map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.ignore_errors().batch(4096)
    decoded = np.zeros(len(index), bool)
    for position, _ in ds.as_numpy_iterator():
        decoded[position] = True
    return decoded


def find_undecodable(examples: Examples) -> tuple[list[int], list[int]]:
    """Indices of files that are missing and of images that fail to decode.

    Each image is decoded once and the result cached under
    ``$SUPERSUB_CACHE_DIR/verified/``. Files on disk are cached one by one, keyed on
    their size and modification time, so a file repaired or corrupted in place is
    checked again; archive members are cached by the archive's fingerprint.

    Returns:
        ``(missing, undecodable)`` index lists.
    """
    if examples.kind == "array" or len(examples) == 0:
        return [], []
    on_disk = examples.kind == "path"
    key = _hash("files", *examples.names) if on_disk else examples.fingerprint
    cache_file = cache_dir() / "verified" / f"{key}.json"
    cached: dict = {}
    if key and cache_file.is_file():
        try:
            cached = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cached = {}
    if not on_disk:
        if "bad" in cached:
            return [], list(cached["bad"])
        bad = [int(i) for i in np.flatnonzero(~_decodes(examples, np.arange(len(examples))))]
        if key:
            _write_cache(cache_file, {"bad": bad})
        return [], bad
    states = _file_states(examples.images)
    known = cached.get("files", {})
    ok = np.zeros(len(examples), bool)
    todo = []
    for i, (name, state) in enumerate(zip(examples.names, states)):
        entry = known.get(name)
        if state is not None and entry is not None and entry[:2] == state:
            ok[i] = entry[2]
        elif state is not None:
            todo.append(i)
    if todo:
        ok[todo] = _decodes(examples, np.asarray(todo))
    missing = [i for i, state in enumerate(states) if state is None]
    files = {name: [*state, bool(good)] for name, state, good in
             zip(examples.names, states, ok) if state is not None}
    if todo or len(files) != len(known):
        _write_cache(cache_file, {"files": files})
    bad = [int(i) for i in np.flatnonzero(~ok) if states[i] is not None]
    return missing, bad


def _write_cache(path, content: dict) -> None:
    try:
        atomic_write_text(path, json.dumps(content))
    except OSError:
        pass  # a read-only cache only costs a re-check next time


def drop_undecodable(examples: Examples, skip: bool, where: str) -> tuple[Examples, list[str]]:
    """Checks every image; raises on the first bad one, or drops them when ``skip``.

    Returns:
        The examples that decode, and the names of those left out.

    Raises:
        DataError: naming the first undecodable file (and how many there are), unless
            ``skip`` is set.
    """
    missing, bad = find_undecodable(examples)
    if missing:  # listed but gone: not a decoding problem, and never skipped silently
        raise DataError(f"{where}: image file {examples.names[missing[0]]} does not exist"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                        + "; it was listed when the dataset was read")
    if not bad:
        return examples, []
    names = [str(examples.names[i]) for i in bad]
    if not skip:
        raise DataError(f"{where}: cannot decode image {names[0]}"
                        + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                        + "; fix or remove it, or set data.skip_bad_images=true to skip such "
                          f"files ({CACHE_HINT})")
    keep = np.setdiff1d(np.arange(len(examples)), np.asarray(bad))
    return examples.take(keep, "decodable"), names
