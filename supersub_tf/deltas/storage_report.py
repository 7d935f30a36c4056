"""Storage accounting of a stored system: ``a`` of ``a * N + 1`` networks, from the files.

The unit is one float32 generalist (every weight, batch-norm statistics included, at 4
bytes); each specialist's archive is broken down into codes, scales, owned weights and
the file format's overhead. ``python -m supersub_tf storage DIR`` prints it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from supersub_tf.deltas.storage import (
    GENERALIST_FILE, MANIFEST, check_classes, manifest_hierarchy, read_manifest,
    read_specialist, verify_file)


def _specialist_breakdown(path: Path, entry: Mapping[str, Any], meta: Mapping[str, Any],
                          arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Bytes of one specialist file by kind: codes, scales, owned (as arrays), what
    compression saved on them, and the format's overhead (header and checksum)."""
    codes = sum(a.nbytes for k, a in arrays.items()
                if k.startswith("delta/") and not k.endswith("/scales"))
    scales = sum(a.nbytes for k, a in arrays.items() if k.endswith("/scales"))
    owned = sum(a.nbytes for k, a in arrays.items() if k.startswith("owned/"))
    size = path.stat().st_size
    raw = codes + scales + owned
    stored = int(meta.get("stored_payload_bytes", raw))
    return {"superclass": entry["superclass"], "file": entry["file"], "bytes": size,
            "code_bytes": codes, "scale_bytes": scales, "delta_bytes": codes + scales,
            "owned_bytes": owned, "compression": meta.get("compression", "none"),
            "compression_saving_bytes": raw - stored, "overhead_bytes": size - stored,
            "owned_layers": sorted(entry.get("owned", {}))}


def storage_report(path: str | os.PathLike) -> dict[str, Any]:
    """Measures a system's files: the paper's ``a * N + 1`` against ``N + 1`` networks.

    The unit is one float32 generalist, ``parameters * 4`` bytes (every weight, batch
    norm statistics included). ``a`` is the mean specialist file size in that unit, so
    the system costs ``a * N + 1`` units in the paper's accounting, where N separate
    float specialists plus the generalist would cost ``N + 1``. ``total_units`` is the
    same measured with the real files (the HDF5 generalist and the manifest included).

    Raises:
        StorageError: When the manifest or a listed file fails verification.
    """
    root = Path(path)
    manifest = read_manifest(root)
    hierarchy = manifest_hierarchy(root, manifest)
    generalist_bytes = verify_file(root, manifest["generalist"]).stat().st_size
    specialists = []
    for entry in manifest["specialists"]:
        specialist, meta, arrays = read_specialist(root, manifest, entry)
        check_classes(specialist, meta, hierarchy, str(entry["superclass"]))
        specialists.append(_specialist_breakdown(specialist, entry, meta, arrays))
    parameters = int(manifest["backbone"]["parameters"])
    unit = parameters * 4
    n = len(specialists)
    a = float(np.mean([s["bytes"] for s in specialists])) / unit if n else 0.0
    manifest_bytes = (root / MANIFEST).stat().st_size
    total = manifest_bytes + generalist_bytes + sum(s["bytes"] for s in specialists)
    return {
        "path": str(root), "format_version": manifest["format_version"],
        "backbone": manifest["backbone"], "delta_settings": manifest["delta_settings"],
        "num_delta_layers": len(manifest["delta_layers"]),
        "delta_values": int(sum(np.prod(d["shape"]) for d in manifest["delta_layers"])),
        "parameters": parameters, "float32_network_bytes": unit,
        "manifest_bytes": manifest_bytes, "generalist_bytes": generalist_bytes,
        "specialists": specialists, "num_specialists": n,
        "specialist_bytes": sum(s["bytes"] for s in specialists),
        "total_bytes": total,
        "a": a, "a_n_plus_1": a * n + 1, "separate_networks": n + 1,
        "total_units": total / unit,
    }


def _bits_label(bits: int | None) -> str:
    return "float32 deltas" if bits is None else f"{bits}-bit deltas, float32 scales"


def format_storage_report(report: Mapping[str, Any]) -> str:
    """A readable table of :func:`storage_report`'s numbers (bytes and units)."""
    backbone, unit = report["backbone"], report["float32_network_bytes"]
    width = max([32] + [len(s["file"]) for s in report["specialists"]])
    blank = " " * 50

    def row(name: str, size: int, detail: str) -> str:
        return f"{name:{width}s} {size:>11,d} {detail} {size / unit:>7.3f}"

    # The base network's head: superclasses for a generalist, classes for the vanilla one.
    base = report["delta_settings"].get("base", "generalist")
    base_outputs = "class" if base == "vanilla" else "superclass"
    lines = [
        f"Super-Sub system {report['path']} (format {report['format_version']})",
        f"backbone {backbone['model']} x{backbone['width']}, {backbone['image_size']} px, "
        f"{backbone['num_classes']} {base_outputs} outputs, {report['parameters']:,} parameters",
        f"{_bits_label(report['delta_settings'].get('bits'))} on "
        f"{report['num_delta_layers']} layers ({report['delta_values']:,} values per "
        "specialist)",
        f"unit: one float32 {'vanilla network' if base == 'vanilla' else 'generalist'} = "
        f"{unit:,} bytes",
        "",
        f"{'part':{width}s} {'bytes':>11s} {'codes':>10s} {'scales':>8s} {'owned':>9s} "
        f"{'lzma':>9s} {'overhead':>9s} {'units':>7s}",
        row(MANIFEST, report["manifest_bytes"], blank),
        row(GENERALIST_FILE, report["generalist_bytes"], blank),
    ]
    for s in report["specialists"]:
        lines.append(row(s["file"], s["bytes"],
                         f"{s['code_bytes']:>10,d} {s['scale_bytes']:>8,d} "
                         f"{s['owned_bytes']:>9,d} {-s.get('compression_saving_bytes', 0):>9,d} "
                         f"{s['overhead_bytes']:>9,d}"))
    lines += [
        row("total", report["total_bytes"], blank),
        "",
        "codes + scales: the deltas; owned: the specialist's own head and batch norm (as "
        "arrays);",
        "lzma: what compressing them saved; overhead: the file's header and checksum "
        "(format 2's .npz: a few hundred bytes per array)",
        f"N = {report['num_specialists']} specialists, a = mean specialist / unit = "
        f"{report['a']:.4f}",
        f"Super-Sub a*N + 1 = {report['a_n_plus_1']:.3f} units, vs N + 1 = "
        f"{report['separate_networks']} separate float32 networks "
        f"({report['separate_networks'] / report['a_n_plus_1']:.1f}x smaller)",
    ]
    return "\n".join(lines)
