"""The layout of a run folder: one typed name for every stage folder and file the run writes.

The main job (:mod:`supersub_tf.run.pipeline`), its freshness check, its completion, the
trainers, the analysis, the studies and the benchmarks all find a run's files here, so a
renamed file is one edit and a misspelt one fails where the attribute is read, not when a
reader later finds nothing. The layout is the one on disk since the first runs: existing
run folders keep working.

``<output_dir>/<name>/``::

    config.yaml, data_summary.json, data_gaps.txt, wall_time.json
    report.md, report.json, export.json
    vanilla/, generalist/, specialists/<superclass>/      network folders
    deltas/<bits>/<superclass>/                           delta specialists
    systems/<bits>/, supersub/<bits>.json                 stored systems, their evaluation
    analysis/*.json, plots/*.png

A *stage folder* (a network's or a delta specialist's) holds :data:`SETTINGS` (written
before it trains), the engine's checkpoints and history, and :data:`METRICS` (written
last: a network is done); a network's also :data:`NETWORK` (how to rebuild it). The
files with a home of their own stay there: the predictions
(``training.predictions.PREDICTIONS``), the history (``training.history.HISTORY``), the
weights (``training.engine``), the deltas (``deltas.specialist_training.DELTA_SET``) and
a system's manifest (``manifest_files.MANIFEST``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from supersub_tf.config import bits_tag

if TYPE_CHECKING:
    from supersub_tf.config import RunConfig

#: A stage folder's record of the settings it was trained with (:mod:`.freshness`).
SETTINGS = "settings.json"
#: A stage folder's results, written last: a network folder holding it is finished.
METRICS = "metrics.json"
#: A network folder's description of how to rebuild it (``training.networks``).
NETWORK = "network.json"

#: The network kinds with a folder of their own directly in the run folder.
TOP_NETWORKS = ("vanilla", "generalist")


def _tag(bits: int | str | None) -> str:
    """A bit-width tag (``4bit``, ``float``) from bits or from a tag already made."""
    return bits if isinstance(bits, str) else bits_tag(bits)


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """Every stage folder and file of one run folder.

    Attributes:
        root: The run folder (``<output_dir>/<name>``).
    """

    root: Path

    CONFIG: ClassVar[str] = "config.yaml"
    DATA_SUMMARY: ClassVar[str] = "data_summary.json"
    DATA_GAPS: ClassVar[str] = "data_gaps.txt"
    WALL_TIME: ClassVar[str] = "wall_time.json"
    REPORT: ClassVar[str] = "report.md"
    REPORT_JSON: ClassVar[str] = "report.json"
    EXPORT: ClassVar[str] = "export.json"
    PLOTS: ClassVar[str] = "plots"
    ANALYSIS: ClassVar[str] = "analysis"
    SPECIALISTS: ClassVar[str] = "specialists"
    DELTAS: ClassVar[str] = "deltas"
    SYSTEMS: ClassVar[str] = "systems"
    SUPERSUB: ClassVar[str] = "supersub"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, config: RunConfig) -> RunLayout:
        """The layout of ``config``'s run folder, ``<output_dir>/<name>``."""
        return cls(Path(config.output_dir) / config.name)

    # ---------------------------------------------------------------- run-level files
    @property
    def config(self) -> Path:
        """``config.yaml``: the config the run's stages were trained with."""
        return self.root / self.CONFIG

    @property
    def data_summary(self) -> Path:
        """``data_summary.json``: images per split and superclass."""
        return self.root / self.DATA_SUMMARY

    @property
    def data_gaps(self) -> Path:
        """``data_gaps.txt``: every file and class the run left out, by name."""
        return self.root / self.DATA_GAPS

    @property
    def wall_time(self) -> Path:
        """``wall_time.json``: the seconds of each invocation of the run."""
        return self.root / self.WALL_TIME

    @property
    def report(self) -> Path:
        """``report.md``: the run's report."""
        return self.root / self.REPORT

    @property
    def report_json(self) -> Path:
        """``report.json``: every number of the report (what completion checks)."""
        return self.root / self.REPORT_JSON

    @property
    def export_record(self) -> Path:
        """``export.json``: sizes, agreement and speed of the run's exports."""
        return self.root / self.EXPORT

    @property
    def plots(self) -> Path:
        """``plots/``: the figures."""
        return self.root / self.PLOTS

    def preview(self, split: str) -> Path:
        """``plots/preview_<split>.png``: the data stage's preview grid."""
        return self.plots / f"preview_{split}.png"

    @property
    def analysis(self) -> Path:
        """``analysis/``: the misclassification analysis's JSON."""
        return self.root / self.ANALYSIS

    # ---------------------------------------------------------------- networks
    def network(self, kind: str, superclass: str | None = None) -> Path:
        """The folder of a ``vanilla``, ``generalist`` or ``specialist`` network (the
        last needs its ``superclass``)."""
        if kind == "specialist":
            if superclass is None:
                raise ValueError("a specialist's folder needs its superclass")
            return self.specialist(superclass)
        if kind not in TOP_NETWORKS:
            raise ValueError(f"no network folder of kind {kind!r} (expected vanilla, "
                             "generalist or specialist)")
        return self.root / kind

    @property
    def vanilla(self) -> Path:
        """``vanilla/``: the network over all fine classes."""
        return self.network("vanilla")

    @property
    def generalist(self) -> Path:
        """``generalist/``: the network over the superclasses."""
        return self.network("generalist")

    @property
    def specialists(self) -> Path:
        """``specialists/``: one independent specialist folder per superclass."""
        return self.root / self.SPECIALISTS

    def specialist(self, superclass: str) -> Path:
        """``specialists/<superclass>/``."""
        return self.specialists / superclass

    def metrics(self, kind: str, superclass: str | None = None) -> Path:
        """A network's :data:`METRICS` file (it exists once the network is finished)."""
        return self.network(kind, superclass) / METRICS

    # ---------------------------------------------------------------- delta specialists
    def deltas(self, bits: int | str | None) -> Path:
        """``deltas/<bits>/``: the delta specialists of one bit width (bits, or a tag)."""
        return self.root / self.DELTAS / _tag(bits)

    def delta_specialist(self, bits: int | str | None, superclass: str) -> Path:
        """``deltas/<bits>/<superclass>/``."""
        return self.deltas(bits) / superclass

    def system(self, bits: int | str | None) -> Path:
        """``systems/<bits>/``: the stored Super-Sub system of one bit width."""
        return self.root / self.SYSTEMS / _tag(bits)

    @property
    def systems(self) -> Path:
        """``systems/``: every stored system."""
        return self.root / self.SYSTEMS

    def supersub_result(self, bits: int | str | None) -> Path:
        """``supersub/<bits>.json``: the two-stage pipeline's evaluation at one bit width."""
        return self.root / self.SUPERSUB / f"{_tag(bits)}.json"

    @property
    def supersub_results(self) -> Path:
        """``supersub/``: every bit width's evaluation."""
        return self.root / self.SUPERSUB
