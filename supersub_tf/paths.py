"""Where data and caches live: ``SUPERSUB_DATA_DIR`` and ``SUPERSUB_CACHE_DIR``."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "SUPERSUB_DATA_DIR"
CACHE_DIR_ENV = "SUPERSUB_CACHE_DIR"


def data_dir() -> Path:
    """The data root: ``$SUPERSUB_DATA_DIR``, else ``~/.cache/supersub_tf/data``.

    Archives (``tiny-imagenet-200.zip``), ImageNet metadata (``imagenet-meta/``) and
    tensorflow-datasets data (``tensorflow_datasets/``) are looked up below it.
    """
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "supersub_tf" / "data"


def cache_dir() -> Path:
    """Writable cache root: ``$SUPERSUB_CACHE_DIR``, else ``~/.cache/supersub_tf``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "supersub_tf"
