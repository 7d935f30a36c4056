"""The run machinery: one run folder, from the main job down to its lock.

``python -m supersub_tf run`` runs :func:`~supersub_tf.run.pipeline.run_pipeline`. The
package's modules:

* :mod:`~supersub_tf.run.layout`: :class:`~supersub_tf.run.layout.RunLayout`, the name of
  every stage folder and file of a run folder;
* :mod:`~supersub_tf.run.freshness`: each stage's ``settings.json`` and the one check that
  a run folder's finished stages still match the config;
* :mod:`~supersub_tf.run.lock`: one command at a time per run folder;
* :mod:`~supersub_tf.run.pipeline`: the main job, stage by stage;
* :mod:`~supersub_tf.run.completion`: what a run folder lacks, and training exactly that.

The first three sit on the lowest floor of the layering (ARCHITECTURE.md): the trainers
record their stage's settings into the folders the layout names. The main job's names
(``run_pipeline``, ``train_stage``, ...) are read from :mod:`.pipeline` on first use
(PEP 562), so ``from supersub_tf.run import run_pipeline`` works as before while
importing ``supersub_tf.run.layout`` from a lower floor loads nothing above it.
"""

from __future__ import annotations

import importlib
from typing import Any

#: The main job's public names, defined in :mod:`supersub_tf.run.pipeline`.
PIPELINE_NAMES = ("NETWORK_KINDS", "run_dir_of", "data_stage", "train_stage",
                  "supersub_stage", "training_compute", "export_stage",
                  "check_export_targets", "finished_networks", "analyze_run", "run_pipeline")

__all__ = list(PIPELINE_NAMES)


def __getattr__(name: str) -> Any:
    if name in PIPELINE_NAMES:
        return getattr(importlib.import_module("supersub_tf.run.pipeline"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *PIPELINE_NAMES])
