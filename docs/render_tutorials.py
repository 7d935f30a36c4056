"""Renders the tutorial notebooks, with their real outputs, into ``docs/tutorials/``.

The notebooks in ``notebooks/`` are committed without outputs; a reader on GitHub would
see no table and no figure. This script executes each one with papermill on a finished
run of the main job (their ``RUN_DIR`` parameter: the run's networks and records are
read, nothing is trained and nothing is written into the run's folder) and converts the
result with nbconvert's Markdown exporter into ``docs/tutorials/<notebook>.md``, its
figures as PNG files in ``docs/tutorials/<notebook>_files/``. Each rendered file starts
with the run it shows: the main-job command that gives the run's settings and when the
run finished. Run it from anywhere, with the data where the run found it::

    SUPERSUB_DATA_DIR=... python docs/render_tutorials.py --run runs/default
    python docs/render_tutorials.py --run runs/default --only 02,03   # some notebooks
    python docs/render_tutorials.py --smoke --out /tmp/tutorials       # SMOKE=True, tiny
    python docs/render_tutorials.py --check-links                      # exit 1 on a stale link
    python docs/render_tutorials.py --sync-links                       # rewrite them

Notebook 05 reads the scaling study instead of the run: ``--scaling`` (by default
``runs/scaling`` when it holds a finished ``scaling.json``, else the committed record
``benchmarks/results/scaling_study_full.json``).

The repository's address is written in one place, ``[project.urls] Repository`` of
``pyproject.toml``; every notebook's *Open in Colab* and *View source* badges and its
install cell are derived from it (``--sync-links`` rewrites them, rendering refuses
stale ones).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import io
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any, Iterator, Sequence

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
DEFAULT_OUT = REPO / "docs" / "tutorials"
SCALING_STUDY = REPO / "runs" / "scaling"
SCALING_RECORD = REPO / "benchmarks" / "results" / "scaling_study_full.json"
SCALING_NOTEBOOK = "05_"  # the notebook that reads the scaling study, not the run
BRANCH = "main"  # the branch the badges point at
KERNEL_NAME = "python3"  # the notebooks' kernelspec name
INDEX = "README.md"  # the rendered folder's index, and the mark that this script made it
MAX_IMAGE_BYTES = 300_000  # a figure bigger than this is quantized, then scaled down
CELL_TIMEOUT_S = 3600  # notebook 04 measures every export over the whole validation split

BADGE_MARK = "tfo-notebook-buttons"  # the class of the badge table (keras-io's)
INSTALL_LINE = re.compile(r'%pip install -q "supersub_tf @ (?P<url>[^"]*)"')
TF_LOG_LINE = re.compile(r"(INFO|WARNING):tensorflow:")  # absl's Python log, echoed on stdout


# ----------------------------------------------------------------------------- links
def repository_url(pyproject: Path = REPO / "pyproject.toml") -> str:
    """``[project.urls] Repository`` of ``pyproject.toml``: ``https://github.com/OWNER/NAME``.

    Raises:
        ConfigError: When the key is missing or is not a GitHub repository address.
    """
    from supersub_tf.errors import ConfigError

    urls = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("urls", {})
    url = str(urls.get("Repository", "")).rstrip("/").removesuffix(".git")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ConfigError(f"{pyproject}: [project.urls] Repository must be "
                          f"https://github.com/OWNER/NAME, got {url!r}")
    return url


def notebook_links(name: str, repo_url: str) -> dict[str, str]:
    """The addresses a notebook's badges and install cell carry, from the repository's."""
    path = f"{repo_url.removeprefix('https://github.com/')}/blob/{BRANCH}/notebooks/{name}"
    return {"colab": f"https://colab.research.google.com/github/{path}",
            "github": f"https://github.com/{path}",
            "install": f"git+{repo_url}.git"}


def badge_source(name: str, repo_url: str) -> str:
    """The badge cell: *Open in Colab* and *View source on GitHub*, as keras-io has them."""
    links = notebook_links(name, repo_url)
    return "\n".join([
        f'<table class="{BADGE_MARK}" align="left">',
        f'  <td><a target="_blank" href="{links["colab"]}"><img src="https://colab.research'
        '.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a></td>',
        f'  <td><a target="_blank" href="{links["github"]}"><img src="https://www.tensorflow'
        '.org/images/GitHub-Mark-32px.png" />View source on GitHub</a></td>',
        "</table>"])


def _badge_cell(nb, path: Path):
    from supersub_tf.errors import DataError

    cells = [c for c in nb.cells if c.cell_type == "markdown" and BADGE_MARK in c.source]
    if len(cells) != 1:
        raise DataError(f"{path}: expected one markdown cell with the badge table "
                        f"({BADGE_MARK}), found {len(cells)}")
    return cells[0]


def _install_cell(nb, path: Path):
    from supersub_tf.errors import DataError

    cells = [c for c in nb.cells if c.cell_type == "code" and INSTALL_LINE.search(c.source)]
    if len(cells) != 1:
        raise DataError(f"{path}: expected one code cell with "
                        f'%pip install -q "supersub_tf @ ...", found {len(cells)}')
    return cells[0]


def link_problems(path: Path, repo_url: str) -> list[str]:
    """What differs between a notebook's badges and install URL and the repository's."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    problems = []
    if _badge_cell(nb, path).source != badge_source(path.name, repo_url):
        problems.append(f"{path.name}: its badges do not point at {repo_url} "
                        f"(notebooks/{path.name} on {BRANCH})")
    url = INSTALL_LINE.search(_install_cell(nb, path).source)["url"]
    if url != notebook_links(path.name, repo_url)["install"]:
        problems.append(f"{path.name}: installs from {url}, not "
                        f"{notebook_links(path.name, repo_url)['install']}")
    return problems


def sync_links(path: Path, repo_url: str) -> bool:
    """Rewrites a notebook's badge cell and install URL from ``repo_url``; True if changed."""
    import nbformat

    if not link_problems(path, repo_url):
        return False
    nb = nbformat.read(path, as_version=4)
    _badge_cell(nb, path).source = badge_source(path.name, repo_url)
    install = _install_cell(nb, path)
    install.source = INSTALL_LINE.sub(
        f'%pip install -q "supersub_tf @ {notebook_links(path.name, repo_url)["install"]}"',
        install.source)
    nbformat.write(nb, path)
    return True


# ----------------------------------------------------------------------------- provenance
def _setting(key: str, value: Any) -> str:
    """A setting as ``--set`` takes it (YAML): lists in brackets, float deltas as float."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_setting(key, v) for v in value) + "]"
    if value is None:
        return "float" if key == "deltas.bits" else "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def settings_command(command: str, saved: dict[str, Any], default: dict[str, Any],
                     skip: Sequence[str] = ("output_dir",)) -> str:
    """``command`` plus one ``--set`` per setting of ``saved`` that differs from ``default``
    (both nested config dicts): the command line that gives a run its recorded settings."""
    from supersub_tf.config import flatten_settings

    saved, default = flatten_settings(saved), flatten_settings(default)
    sets = [f"--set {shlex.quote(f'{key}={_setting(key, value)}')}"
            for key, value in saved.items() if key not in skip and default.get(key) != value]
    return " ".join([command, *sets])


def _utc(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def run_provenance(run_dir: Path, shown: str) -> str:
    """What a finished main-job run is: the command that gives its settings (its
    ``config.yaml`` against the built-in default config), when it finished (``report.json``'s
    modification time, as the benchmarks date a run) and its wall time.

    Raises:
        DataError: When ``run_dir`` has no ``report.json`` (not a finished run).
    """
    from supersub_tf.config import config_to_dict, load_config
    from supersub_tf.errors import DataError
    from supersub_tf.run.layout import RunLayout

    layout = RunLayout(run_dir)
    report = layout.report_json
    if not report.is_file() or not layout.config.is_file():
        raise DataError(f"{run_dir}: no report.json and config.yaml; not a finished run of "
                        "the main job (python -m supersub_tf run)")
    command = settings_command("python -m supersub_tf run",
                               config_to_dict(load_config(layout.config)),
                               config_to_dict(load_config("default")))
    wall = json.loads(report.read_text(encoding="utf-8")).get("wall_seconds")
    return (f"the finished run `{shown}` of `{command}` (the built-in default config with the "
            f"differences of its `config.yaml`), finished {_utc(report.stat().st_mtime)}"
            + (f" after {_duration(wall)} of wall time" if wall else ""))


def scaling_record(path: Path) -> Path:
    """The ``scaling.json`` of a study folder, or ``path`` itself when it is a record.

    Raises:
        DataError: When there is no such file.
    """
    from supersub_tf.errors import DataError

    record = path / "scaling.json" if path.is_dir() else path
    if not record.is_file():
        raise DataError(f"{path}: no scaling.json; not a finished scaling study "
                        "(python -m supersub_tf scale)")
    return record


def scaling_provenance(path: Path, shown: str) -> str:
    """What a scaling study record is: its folder's settings as a ``scale`` command line
    and its date, or, for a copied record (``benchmarks/results/``), the benchmark command
    and date it records."""
    from supersub_tf.config import config_to_dict
    from supersub_tf.studies.scaling import DEFAULT_SCALING_CONFIG, load_scaling_config

    record = scaling_record(path)
    study = json.loads(record.read_text(encoding="utf-8"))
    saved = record.parent / "scaling_config.yaml"
    if saved.is_file():
        command = settings_command(
            "python -m supersub_tf scale", config_to_dict(load_scaling_config(saved)),
            config_to_dict(load_scaling_config(DEFAULT_SCALING_CONFIG)),
            skip=("output_dir", "base.output_dir"))
        when = study.get("created") or _utc(record.stat().st_mtime)
        return f"the scaling study `{shown}` of `{command}`, written {when}"
    command = study.get("command", "?").split(" ", 1)  # the interpreter as the README has it
    if len(command) == 2 and Path(command[0]).name.startswith("python"):
        command[0] = "python"
    date = str((study.get("machine") or {}).get("date", "?"))[:10]
    return (f"the record `{shown}` of the scaling study (`python -m supersub_tf scale`, "
            f"recorded by `{' '.join(command)}` on {date}; the record does not keep the "
            "study's settings)")


def default_scaling() -> Path:
    """``runs/scaling`` once the study has written its record, else the committed record."""
    return SCALING_STUDY if (SCALING_STUDY / "scaling.json").is_file() else SCALING_RECORD


# ----------------------------------------------------------------------------- execution
@contextlib.contextmanager
def pinned_kernel() -> Iterator[None]:
    """A ``python3`` kernelspec that runs this interpreter, first on ``JUPYTER_PATH``, so a
    user-wide ``python3`` kernel of another Python is never picked."""
    old = os.environ.get("JUPYTER_PATH")
    with tempfile.TemporaryDirectory(prefix="supersub_tf_kernel_") as folder:
        spec_dir = Path(folder) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": f"Python 3 ({sys.prefix})", "language": "python"}
        (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (folder, old) if p)
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def execute(path: Path, out: Path, parameters: dict[str, Any]):
    """Runs a notebook with papermill in the repository root; returns the executed node.

    Raises:
        papermill.PapermillExecutionError: Naming the cell that failed.
    """
    import papermill

    return papermill.execute_notebook(str(path), str(out), parameters=parameters,
                                      kernel_name=KERNEL_NAME, cwd=str(REPO),
                                      progress_bar=False, log_output=False,
                                      execution_timeout=CELL_TIMEOUT_S)


def shrink_png(data: bytes, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """A PNG of at most ``limit`` bytes where possible: quantized to 256 colours, then
    scaled down by a tenth at a time (keeps the smallest if nothing fits)."""
    from PIL import Image

    if len(data) <= limit:
        return data
    image = Image.open(io.BytesIO(data)).convert("RGB")
    best = data
    while True:
        buffer = io.BytesIO()
        image.quantize(256).save(buffer, format="PNG", optimize=True)
        if buffer.tell() < len(best):
            best = buffer.getvalue()
        if len(best) <= limit or min(image.size) < 200:
            return best
        image = image.resize((image.width * 9 // 10, image.height * 9 // 10), Image.LANCZOS)


def to_markdown(nb, stem: str) -> tuple[str, dict[str, bytes]]:
    """The executed notebook as Markdown and its figures (``<stem>_files/<name>.png``).

    Output on stderr (TensorFlow's and Keras' native log lines and warnings) and
    TensorFlow's Python log lines on stdout (``INFO:tensorflow:Assets written to ...``)
    are left out: they differ from machine to machine and are not what the tutorial shows.
    """
    from nbconvert import MarkdownExporter

    nb = copy.deepcopy(nb)  # the filter below must not touch the caller's notebook
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            if out.output_type == "stream":
                if out.name == "stderr":
                    continue
                out.text = "".join(line for line in out.text.splitlines(keepends=True)
                                   if not TF_LOG_LINE.match(line))
                if not out.text:
                    continue
            kept.append(out)
        cell.outputs = kept
    body, resources = MarkdownExporter().from_notebook_node(
        nb, resources={"output_files_dir": f"{stem}_files", "unique_key": stem})
    images = {name: shrink_png(data) if name.endswith(".png") else data
              for name, data in resources.get("outputs", {}).items()}
    return body, images


def _shown(path: Path) -> str:
    """A path as the reader should see it: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def header(name: str, parameters: dict[str, Any], provenance: str | None, command: str) -> str:
    """The lines above a rendered tutorial: what it is, what it ran on, how to redo it."""
    source = f"notebooks/{name}"
    shown = ", ".join(f"`{key} = {value!r}`" for key, value in parameters.items())
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    if provenance:
        ran = f"It read {provenance}; nothing was trained or written there."
    else:
        ran = "Smoke mode: tiny networks whose numbers only show that every step runs."
    return "\n".join([
        f"<!-- Written by `{command}`; edit {source}, not this file. -->", "",
        f"> **Rendered with its outputs:** [`{source}`](../../{source}), executed {today} "
        f"with {shown}. {ran}", ">", f"> Regenerate with `{command}`.", "", ""])


def render(names: Sequence[str], out: Path, run: Path | None = None,
           scaling: Path | None = None, smoke: bool = False, command: str = "",
           log=print) -> list[Path]:
    """Executes the notebooks ``names`` and writes their Markdown copies into ``out``.

    Args:
        names: Notebook file names in ``notebooks/``.
        out: The rendered folder (replaced as a whole, atomically; the copies of notebooks
            not rendered now are kept).
        run: A finished main-job run for the ``RUN_DIR`` of notebooks 01 to 04.
        scaling: A scaling study folder or record for notebook 05 (default
            :func:`default_scaling`).
        smoke: Execute with ``SMOKE = True`` instead (no run needed).
        command: This script's command line, written into each file.
        log: Where progress lines go.

    Returns:
        The Markdown files written.

    Raises:
        ConfigError: A stale badge or install URL (``--sync-links`` fixes it).
        DataError: A run or study that is not finished.
        papermill.PapermillExecutionError: A cell that failed.
    """
    from supersub_tf.atomic import atomic_directory
    from supersub_tf.errors import ConfigError

    repo_url = repository_url()
    paths = [NOTEBOOK_DIR / name for name in names]
    problems = [p for path in paths for p in link_problems(path, repo_url)]
    if problems:
        raise ConfigError(f"{problems[0]}; run python docs/render_tutorials.py --sync-links")
    jobs = []
    for path in paths:
        if smoke:
            jobs.append((path, {"SMOKE": True}, None))
        elif path.name.startswith(SCALING_NOTEBOOK):
            study = scaling or default_scaling()
            jobs.append((path, {"RUN_DIR": _shown(study)},
                         scaling_provenance(study, _shown(study))))
        elif run is None:
            raise ConfigError(f"{path.name} needs a finished run (--run runs/default) or --smoke")
        else:
            jobs.append((path, {"RUN_DIR": _shown(run)}, run_provenance(run, _shown(run))))
    rendered: dict[str, tuple[str, dict[str, bytes]]] = {}
    with tempfile.TemporaryDirectory(prefix="supersub_tf_render_") as scratch, pinned_kernel():
        for path, parameters, provenance in jobs:
            log(f"[render] {path.name} with {parameters}")
            start = time.perf_counter()
            nb = execute(path, Path(scratch) / path.name, parameters)
            body, images = to_markdown(nb, path.stem)
            rendered[path.stem] = (header(path.name, parameters, provenance, command) + body,
                                   images)
            log(f"[render] {path.name}: {time.perf_counter() - start:.0f} s, "
                f"{len(images)} figure(s)")
    with atomic_directory(out, INDEX, "folder of rendered tutorials") as work:
        if out.is_dir():  # the other notebooks' copies stay as they were
            for item in out.iterdir():
                stem = item.name.removesuffix(".md").removesuffix("_files")
                if stem not in rendered and item.name != INDEX:
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, work / item.name)
        for stem, (text, images) in rendered.items():
            (work / f"{stem}.md").write_text(text, encoding="utf-8")
            for name, data in images.items():
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                (work / name).write_bytes(data)
        tutorials = sorted(p.name for p in work.glob("*.md"))
        (work / INDEX).write_text("\n".join(
            ["# Tutorials, rendered", "",
             "The notebooks of `notebooks/` with their outputs, executed on a finished run of "
             "the main job (each file's first lines name the run and its command). Written by "
             f"`{command}`; edit the notebooks, not these files.", ""]
            + [f"- [{name.removesuffix('.md')}]({name})" for name in tutorials]) + "\n",
            encoding="utf-8")
    return [out / f"{stem}.md" for stem in rendered]


def _selected(only: str | None) -> list[str]:
    from supersub_tf.errors import ConfigError

    names = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
    if not only:
        return names
    chosen = []
    for prefix in only.split(","):
        found = [n for n in names if n.startswith(prefix.strip())]
        if len(found) != 1:
            raise ConfigError(f"--only {prefix!r}: matches {found or 'no notebook'} in "
                              f"{NOTEBOOK_DIR}")
        chosen += found
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--run", type=Path, help="a finished run of the main job (runs/default)")
    mode.add_argument("--smoke", action="store_true",
                      help="execute with SMOKE = True (tiny networks; for checks)")
    mode.add_argument("--check-links", action="store_true",
                      help="exit 1 when a notebook's badges or install URL differ from "
                           "pyproject.toml's [project.urls] Repository")
    mode.add_argument("--sync-links", action="store_true",
                      help="rewrite the notebooks' badges and install URLs from pyproject.toml")
    parser.add_argument("--scaling", type=Path,
                        help="notebook 05's study: a folder with scaling.json or the record "
                             f"(default {_shown(SCALING_STUDY)} when finished, else "
                             f"{_shown(SCALING_RECORD)})")
    parser.add_argument("--only", help="notebooks by prefix, comma-separated (e.g. 02,05)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"the rendered folder (default {_shown(DEFAULT_OUT)})")
    args = parser.parse_args(argv)

    from supersub_tf.errors import SuperSubError

    try:
        names = _selected(args.only)
        if args.check_links or args.sync_links:
            repo_url = repository_url()
            if args.sync_links:
                for name in names:
                    if sync_links(NOTEBOOK_DIR / name, repo_url):
                        print(f"[links] {name}: badges and install URL set to {repo_url}")
                return 0
            problems = [p for name in names for p in link_problems(NOTEBOOK_DIR / name,
                                                                   repo_url)]
            print("\n".join(problems) or f"[links] every notebook points at {repo_url}")
            return 1 if problems else 0
        # What regenerates every copy alike: the inputs, not --only or --out.
        inputs = ["--smoke"] if args.smoke else ["--run", str(args.run)]
        inputs += ["--scaling", str(args.scaling)] if args.scaling else []
        command = " ".join(["python docs/render_tutorials.py", *map(shlex.quote, inputs)])
        written = render(names, args.out.resolve(), run=args.run and args.run.resolve(),
                         scaling=args.scaling and args.scaling.resolve(), smoke=args.smoke,
                         command=command)
    except SuperSubError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("\n".join(f"[render] {path}" for path in written))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # the package of this checkout, also when not installed
    sys.exit(main())
