"""Shared helpers of the benchmarks that answer the paper's questions from a run.

Every question benchmark (``within_vs_across_errors``, ``specialists_vs_vanilla``,
``supersub_vs_vanilla``, ``storage_vs_accuracy``, ``supersub_pipeline``) works the same
way:

* **full mode** (default) reads the main job's run of the default config
  (``runs/default``), training or resuming what is missing with
  :func:`supersub_tf.run.run_pipeline` (finished networks and delta sets are reused);
* **small mode** (``--small``) does the same on a quick-profile run
  (``QUICK_PROFILE``, named ``bench_small``) that all the scripts share, so the first
  one trains it (minutes) and the others only read it;
* ``--run DIR`` reads an existing run directory and never trains.

Training needs the data where the main job finds it (``SUPERSUB_DATA_DIR``, e.g.
``SUPERSUB_DATA_DIR=/work/shared/data``); run the scripts from the repository root.

Each prints its tables and writes ``benchmarks/results/<script>_<mode>.json``
atomically, with the machine (CPUs, platform, TensorFlow, date, git commit), the wall
time and the exact command line.

The scripts import this module as ``common`` (``python benchmarks/<script>.py`` puts
``benchmarks/`` on ``sys.path``). Nothing here imports TensorFlow at import time.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import supersub_tf  # noqa: F401  (selects tf_keras and oneDNN before TensorFlow loads)
from supersub_tf.atomic import atomic_write_text
from supersub_tf.config import QUICK_PROFILE, RunConfig, load_config
from supersub_tf.run.completion import complete_run
from supersub_tf.run.freshness import StaleRunError
from supersub_tf.run.layout import METRICS, RunLayout
from supersub_tf.run.lock import RunLockedError
from supersub_tf.tables import cell, pct, points, text_table  # noqa: F401 (the scripts' formats)

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
DEFAULT_CONFIG = REPO / "supersub_tf" / "configs" / "default.yaml"
#: The quick-profile run every ``--small`` benchmark shares.
SMALL_RUN = "bench_small"

# ----------------------------------------------------------------------------- modes
def mode_name(small: bool, suffix: str = "") -> str:
    """``small`` or ``full``, plus ``_<suffix>`` when given."""
    return ("small" if small else "full") + (f"_{suffix}" if suffix else "")


def run_overrides(small: bool, extra: Sequence[str] = ()) -> list[str]:
    """Config overrides of a benchmark's run: the quick profile (renamed ``bench_small``)
    in small mode, nothing in full mode; then ``extra`` (later overrides win)."""
    base = []
    if small:
        base = [o for o in QUICK_PROFILE if not o.startswith("name=")] + [f"name={SMALL_RUN}"]
    return base + list(extra)


def load_run_config(overrides: Sequence[str] = ()) -> RunConfig:
    """The main job's config: ``supersub_tf/configs/default.yaml`` (as ``python -m supersub_tf run``
    reads it; the built-in defaults without it) with ``overrides``."""
    path = DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None
    return load_config(path, list(overrides))


def add_run_arguments(parser, what: str = "the run") -> None:
    """The options every question benchmark has: ``--small``, ``--run``, ``--retrain``,
    ``--wait``, ``--output``."""
    parser.add_argument("--small", action="store_true",
                        help=f"{what} of the quick profile (run {SMALL_RUN!r}, minutes)")
    parser.add_argument("--run", metavar="DIR",
                        help="read this finished run directory; never trains")
    parser.add_argument("--retrain", action="store_true",
                        help="train again the run's stages whose settings differ from the "
                             "config's (without it such a run is refused)")
    parser.add_argument("--wait", action="store_true",
                        help="when another job is writing the run, wait for it to finish "
                             "instead of stopping")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/"
                                         "<script>_<mode>.json)")


# ----------------------------------------------------------------------------- machine
def _package_version(*names: str) -> str | None:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def git_commit(repo: Path = REPO) -> dict[str, Any] | None:
    """HEAD's commit and whether the tree has uncommitted changes (None outside git).

    Uses ``--no-optional-locks`` so it never takes the index lock of a repository that
    others are committing to.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(repo), *args],
                              capture_output=True, text=True, timeout=20,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def machine_info() -> dict[str, Any]:
    """CPUs, platform, library versions, date, load and git commit of this run."""
    tf = sys.modules.get("tensorflow")
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpus": os.cpu_count(), "usable_cpus": usable, "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": getattr(tf, "__version__", None) or _package_version(
            "tensorflow", "tensorflow-cpu", "tf-nightly"),
        "tf_keras": _package_version("tf_keras", "tf-keras"),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "load_average_1_5_15min": load,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_commit(),
    }


def command_line() -> str:
    """The exact command line of this process, quoted for a shell."""
    return shlex.join([sys.executable, *sys.argv])


def result_path(script: str, mode: str, output: str | os.PathLike | None = None) -> Path:
    """``--output`` when given, else ``benchmarks/results/<script>_<mode>.json``."""
    return Path(output) if output else RESULTS_DIR / f"{script}_{mode}.json"


def write_result(script: str, mode: str, payload: dict[str, Any], started: float,
                 output: str | os.PathLike | None = None) -> Path:
    """Writes ``payload`` with the benchmark's name, mode, command line, working folder,
    machine and wall time (since ``started``, a ``time.perf_counter()`` value)
    atomically to :func:`result_path`; returns the path."""
    result = {"benchmark": script, "mode": mode, "command": command_line(),
              "cwd": os.getcwd(), "machine": machine_info(),
              "wall_seconds": round(time.perf_counter() - started, 1), **payload}
    path = result_path(script, mode, output)
    atomic_write_text(path, json.dumps(result, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# ----------------------------------------------------------------------------- tables
def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]],
                align: str | None = None) -> None:
    """Prints a title line, the table (:func:`supersub_tf.tables.text_table`) and a blank
    line."""
    print(title)
    print(text_table(header, rows, align))
    print(flush=True)


# ----------------------------------------------------------------------------- runs
def read_json(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def resolve_run_dir(config: RunConfig) -> Path:
    """``<output_dir>/<name>``, a relative ``output_dir`` taken from the repository root."""
    out = Path(config.output_dir)
    return (out if out.is_absolute() else REPO / out) / config.name


def supersub_results(run_dir: Path) -> dict[str, dict]:
    """``supersub/<tag>.json`` of a run by tag, in the order float, 8bit, 7bit, ..., 2bit."""
    found = {p.stem: read_json(p) for p in RunLayout(run_dir).supersub_results.glob("*.json")}
    return dict(sorted(found.items(), key=lambda kv: tag_order(kv[0])))


def tag_order(tag: str) -> int:
    """Sort key of bit-width tags: ``float`` first, then more bits before fewer."""
    if tag == "float":
        return 0
    try:
        return 100 - int(tag.removesuffix("bit"))
    except ValueError:
        return 1000


def tag_bits(tag: str) -> int:
    """Bits per delta value of a tag: 32 for ``float``."""
    return 32 if tag == "float" else int(tag.removesuffix("bit"))


def ensure_run(overrides: Sequence[str] = (), run: str | os.PathLike | None = None,
               wait: bool = False, log: Callable[[str], None] = print,
               retrain: bool = False) -> dict[str, Any]:
    """The finished run a benchmark reads: ``run`` as it is, or the run of the main job's
    config with ``overrides``, trained or resumed first when parts are missing.

    Completing is the package's :func:`~supersub_tf.run.completion.complete_run`: only
    the missing parts train, under the run's lock (another command writing the run stops
    it, or with ``wait`` is waited for), and stages trained with other settings stop it,
    or with ``retrain`` are trained again.

    Returns:
        ``run_dir`` (Path), ``config`` (RunConfig), ``report`` (report.json),
        ``trained`` (whether this call trained or evaluated anything), ``missing``
        (what was missing before), ``report_mtime`` (ISO date of report.json).

    Raises:
        SystemExit: For a ``run`` without ``report.json``, a run directory made with
            different settings, or a run another job is writing (without ``wait``).
    """
    if run is not None:
        run_dir = Path(run).resolve()
        layout = RunLayout(run_dir)
        if not layout.report_json.is_file():
            raise SystemExit(f"{run_dir}: no report.json; not a finished run of the main job")
        config = load_config(layout.config) if layout.config.is_file() else load_run_config()
        return _run_info(run_dir, config, trained=False, missing=[])
    config = load_run_config(overrides)
    run_dir = resolve_run_dir(config)
    try:
        with contextlib.chdir(REPO):  # the config's paths are the repository's
            missing = complete_run(config, run_dir, retrain=retrain, wait=wait, log=log)
    except StaleRunError as err:
        raise SystemExit(f"{err}\npass --retrain, or --run to read it as it is") from None
    except RunLockedError as err:
        raise SystemExit(f"{err}; or pass --wait, or read the run as it is (--run)") from None
    return _run_info(run_dir, config, trained=bool(missing), missing=missing)


def add_variant_arguments(parser, what: str = "the variants") -> None:
    """The options of a benchmark that trains variants of the main job's run: ``--small``,
    ``--retrain``, ``--output``."""
    parser.add_argument("--small", action="store_true",
                        help=f"{what} of the quick profile (base run {SMALL_RUN!r}, minutes)")
    parser.add_argument("--retrain", action="store_true",
                        help="train again the stages whose settings differ")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/...)")


def variant_run(base_overrides: Sequence[str], overrides: Sequence[str], name: str,
                reuse: dict[str, Path], retrain: bool = False) -> Path:
    """A run of the main job's config with ``overrides``, named ``name``, whose Super-Sub
    stage is trained (where missing) after copying in the finished networks it shares
    with other runs (``reuse``: network folder name -> the run to copy it from), so only
    what differs trains. Returns its run directory."""
    import shutil

    from supersub_tf.run import supersub_stage

    config = load_run_config([*base_overrides, *overrides, f"name={name}"])
    run_dir = resolve_run_dir(config)
    for network, source in reuse.items():
        if not (run_dir / network / METRICS).is_file():
            shutil.rmtree(run_dir / network, ignore_errors=True)
            shutil.copytree(Path(source) / network, run_dir / network)
    started = time.perf_counter()
    with contextlib.chdir(REPO):
        supersub_stage(config, retrain=retrain)
    print(f"[bench] {name}: {time.perf_counter() - started:.0f} s", flush=True)
    return run_dir


def _run_info(run_dir: Path, config: RunConfig, trained: bool,
              missing: list[str]) -> dict[str, Any]:
    report_path = RunLayout(run_dir).report_json
    mtime = datetime.datetime.fromtimestamp(report_path.stat().st_mtime, datetime.timezone.utc)
    return {"run_dir": run_dir, "config": config, "report": read_json(report_path),
            "trained": trained, "missing": missing,
            "report_mtime": mtime.isoformat(timespec="seconds")}


def run_summary(info: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able description of a run for a result file."""
    config = info["config"]
    try:
        shown = info["run_dir"].relative_to(REPO)
    except ValueError:
        shown = info["run_dir"]
    return {"run_dir": str(shown), "name": config.name, "trained_now": info["trained"],
            "missing_before": info["missing"], "report_mtime": info["report_mtime"],
            "run_wall_seconds": info["report"].get("wall_seconds"),
            "backbone": {"model": config.train.model, "width": config.train.width,
                         "image_size": config.data.image_size},
            "epochs": config.train.epochs,
            "specialist_epochs": config.train.specialist_epochs or config.train.epochs,
            "max_per_class": config.data.max_per_class, "preset": config.data.preset,
            "dataset": info["report"].get("data", {}).get("dataset")}
