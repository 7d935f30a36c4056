"""The committed record of a finished main job, for the numbers README and REPRODUCTION cite.

Run folders (``runs/<name>/``) are not committed, so a figure quoted from a run's
``report.md`` could not be checked once the folder is gone. This copies the parts of a run
that the documents quote into one small JSON file: the networks (top-1, top-5, training
seconds), the error analysis of the vanilla network (within/across the superclass, chance,
LCA height: ``severity``), every Super-Sub system's routing results and its comparison with the vanilla
network, the export's agreement and accuracy, the wall time of the main job and the
config it ran.

    python benchmarks/run_record.py runs/default [runs/default_seed1 ...]

Writes ``benchmarks/results/run_record_<name>.json`` per run (never trains). Paths inside
the run are written relative to the repository (``runs/<name>/...``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import common
from supersub_tf.run.layout import RunLayout

SCRIPT = "run_record"


def _without_lists(value: Any) -> Any:
    """Drops long per-image or per-class lists (kept: numbers and short mappings)."""
    if isinstance(value, dict):
        return {k: _without_lists(v) for k, v in value.items()
                if not (isinstance(v, list) and len(v) > 20)}
    return value


def run_record(run_dir: Path) -> dict[str, Any]:
    """The record of one finished run (see the module docstring)."""
    layout = RunLayout(run_dir)
    report_path = layout.report_json
    if not report_path.is_file():
        raise SystemExit(f"{run_dir}: no report.json; is this a finished main job's run?")
    report = common.read_json(report_path)
    analysis = (report.get("analysis") or {}).get("vanilla") or {}
    record: dict[str, Any] = {
        "run": f"runs/{run_dir.name}",
        "config": layout.config.read_text(),
        "wall_seconds": report.get("wall_seconds"),
        "wall_seconds_all_invocations": report.get("wall_seconds_all_invocations"),
        "networks": report.get("networks"),
        "vanilla_errors": {key: analysis.get(key) for key in
                           ("top1", "top5", "superclass_accuracy", "errors", "severity")
                           if key in analysis},
        "supersub": {},
    }
    for path in sorted(layout.supersub_results.glob("*.json")):
        result = common.read_json(path)
        record["supersub"][path.stem] = _without_lists({
            key: result[key] for key in
            ("bits", "base", "stage_one", "topk", "gate_tau", "distill", "storage",
             "vanilla_comparison") if key in result})
        record["supersub"][path.stem]["routing"] = {
            name: {k: v for k, v in routing.items() if k != "per_superclass"}
            for name, routing in result.get("routing", {}).items()}
    export_path = layout.export_record
    if export_path.is_file():
        record["export"] = _without_lists(common.read_json(export_path))
    # Absolute paths of this machine say nothing to a reader of the record.
    text = json.dumps(record).replace(str(run_dir.resolve()), record["run"])
    return json.loads(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    args = parser.parse_args()
    for run_dir in args.runs:
        started = time.perf_counter()
        record = run_record(run_dir)
        path = common.write_result(SCRIPT, run_dir.name, record, started)
        supersub = record["supersub"]
        rows = [[tag, *(common.pct(r["routing"][name]["top1"]) if name in r["routing"] else ""
                        for name in ("hard", "topk", "soft", "gated", "oracle"))]
                for tag, r in supersub.items()]
        vanilla = (record["networks"] or {}).get("vanilla", {})
        print(f"{record['run']}: vanilla top-1 {common.pct(vanilla.get('top1'))}, "
              f"wall {record['wall_seconds']} s")
        common.print_table("Super-Sub top-1", ["system", "hard", "top-k", "soft", "gated",
                                               "oracle"], rows)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
