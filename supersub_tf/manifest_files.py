"""Files a manifest lists: each one's record (path, size, sha256) and its check.

A stored system (:mod:`supersub_tf.deltas.storage`), the SavedModel export and the
LiteRT export each keep a ``manifest.json`` that lists their files with size and sha256,
so a missing, truncated or replaced file is named before anything runs. This module is
that one mechanism. It uses only the standard library because the LiteRT export copies
it, byte for byte, next to its runtime (as ``supersub_manifest_files.py``), which runs
without ``supersub_tf``; a test checks the copy is identical.

Callers pass the exception class to raise (``DataError`` in the package, the runtime's
``ExportError``) and say what the folder is (``"system"``, ``"export"``), which the
messages name.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
_HASH_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (never whole into memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(root: str | os.PathLike, relative: str) -> dict[str, Any]:
    """The manifest record of a written file: its relative path, size and sha256."""
    path = Path(root) / relative
    return {"file": relative, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def read_manifest_json(root: str | os.PathLike, error: type[Exception],
                       what: str) -> dict[str, Any]:
    """``root/manifest.json`` as a dict, whatever its format.

    Raises:
        error: Naming the file, when it is missing, unreadable, not UTF-8, not valid JSON
            (with the line and column) or not a JSON object; ``what`` says what ``root``
            should be.
    """
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: not found ({root} is not a {what})") from None
    except json.JSONDecodeError as err:
        raise error(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: "
                    f"{err.msg})") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise error(f"{path}: unreadable ({err.strerror or err})") from None
    if not isinstance(manifest, dict):
        raise error(f"{path}: not a JSON object ({root} is not a {what})")
    return manifest


def read_manifest_file(root: str | os.PathLike, format_name: str, error: type[Exception],
                       what: str) -> dict[str, Any]:
    """``root/manifest.json`` as a dict, checked to be of ``format_name``.

    Raises:
        error: When the manifest is missing, unreadable, not a JSON object or of another
            format (the message names the file; ``what`` says what ``root`` should be).
    """
    manifest = read_manifest_json(root, error, what)
    if manifest.get("format") != format_name:
        raise error(f"{Path(root) / MANIFEST}: not a {format_name} manifest (format "
                    f"{manifest.get('format')!r})")
    return manifest


def verify_file(root: str | os.PathLike, entry: Any, error: type[Exception],
                what: str) -> Path:
    """Checks that a listed file exists inside ``root`` with the entry's size and sha256.

    Args:
        root: The folder the manifest describes.
        entry: The file's record, ``{"file", "bytes", "sha256"}``.
        error: Exception class to raise.
        what: What ``root`` is (``"system"``, ``"export"``), for the messages.

    Raises:
        error: Naming the file when the entry is malformed, the file lies outside
            ``root``, is missing, or its size or sha256 differs (truncated, replaced or
            corrupted).
    """
    root = Path(root)
    try:
        relative = str(entry["file"])
        size, digest = int(entry["bytes"]), str(entry["sha256"])
    except (KeyError, TypeError, ValueError):
        raise error(f"{root / MANIFEST}: malformed file entry {entry!r}") from None
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise error(f"{root / MANIFEST}: file {relative!r} lies outside the {what}")
    path = root / relative
    if not path.is_file():
        raise error(f"{path}: missing (listed in {MANIFEST})")
    actual = path.stat().st_size
    if actual != size:
        raise error(f"{path}: size {actual} bytes, the manifest says {size}")
    if sha256_file(path) != digest:
        raise error(f"{path}: sha256 mismatch (the file is corrupted or was replaced)")
    return path
