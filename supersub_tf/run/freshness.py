"""Which finished stages of a run folder still match the config: the one freshness check.

A run folder holds one config's networks. Each trained stage (the vanilla network, the
generalist, each specialist, each delta specialist of each bit width) writes
``settings.json`` with the settings it depends on *before* it starts training, so a
finished or an interrupted stage both say what they were trained with. The check is made
once, by the run's orchestration, before any work: every stage of the main job
(:mod:`supersub_tf.run.pipeline`), its completion and the studies call
:func:`ensure_fresh` for every stage folder they may reuse; a stage whose record differs
from what the config wants is refused with one line naming each differing setting, or,
with ``retrain=True``, deleted so that exactly the stale stages train again. The trainers
below (``training.networks``, ``deltas.specialist_training``) only record their settings
and train, resume or load whatever folder they are given.

Stored systems (``systems/<bits>``), the pipeline's evaluation (``supersub/<bits>.json``)
and the exports are rebuilt from the delta specialists on every run, so they are fresh
whenever the delta specialists are.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from supersub_tf.atomic import atomic_write_text
from supersub_tf.config import RunConfig, bits_tag, config_to_dict, flatten_settings
from supersub_tf.errors import ConfigError
from supersub_tf.run.layout import SETTINGS, RunLayout

SETTINGS_FILE = SETTINGS  # the name this module has always exported
#: The pretrained-backbone train settings and their defaults, left out of a record
#: when at their default (records made before they existed stay valid).
PRETRAINED_DEFAULTS = {"train.pretrained": "none", "train.pretrained_head": False,
                       "train.freeze_batchnorm": False, "train.trunk_learning_rate": 1.0}

#: Settings that cannot change what a stage learns, each with the reason; a stage
#: trained under other values of these is reused as it is.
NEUTRAL_SETTINGS: dict[str, str] = {
    "train.verbose": "progress display only",
    "train.eval_batch_size": "batching of evaluation; predictions are the same",
    "train.backup_every_steps": "how often a resumable backup is written",
    "train.deterministic": "makes the same training reproducible, not a different one",
    "train.distribution": ("spreads the same global batch over devices (batch-norm "
                           "statistics aside, the same optimisation)"),
    "data.path": "where the same dataset is found",
    "data.download": "whether an absent archive is fetched",
    "data.verify_images": "a check before use; the images used are the same",
    "data.cache": "memory caching of the same images",
    "data.skip_bad_images": ("leaves out files that cannot be decoded; without it such "
                             "files stop the run before any training, so a finished "
                             "stage saw the same images either way"),
}


class StaleRunError(ConfigError):
    """A run folder holds stages trained with other settings than the config's."""


def _relevant(flat: dict[str, Any]) -> dict[str, Any]:
    keep = {k: v for k, v in flat.items() if k not in NEUTRAL_SETTINGS}
    if keep.get("data.dataset") != "synthetic":  # the generator's settings are unused
        keep = {k: v for k, v in keep.items() if not k.startswith("data.synthetic.")}
    return keep


def network_settings(config: RunConfig, kind: str) -> dict[str, Any]:
    """What a ``vanilla``, ``generalist`` or ``specialist`` network depends on: the
    seed, the data and the training settings (a specialist's epochs as it trains)."""
    flat = flatten_settings({k: v for k, v in config_to_dict(config).items()
                             if k in ("seed", "data", "train")})
    specialist_epochs = flat.pop("train.specialist_epochs")
    if kind == "specialist":
        flat["train.epochs"] = specialist_epochs or flat["train.epochs"]
    for key, default in PRETRAINED_DEFAULTS.items():  # recorded only when set, so that
        if flat.get(key, default) == default:           # older records stay valid
            flat.pop(key, None)
    fine_head = flat.pop("train.generalist_fine_head")
    if kind == "generalist" and fine_head:  # recorded only when on: older records stay valid
        flat["train.generalist_fine_head"] = fine_head
    return _relevant(flat)


def delta_settings(config: RunConfig, bits: int | None) -> dict[str, Any]:
    """What a delta specialist of one bit width depends on: its base network's settings
    (the vanilla network's or the generalist's) and the fine-tuning's (epochs as it
    trains)."""
    deltas = config.deltas
    return {**network_settings(config, deltas.base),
            # recorded only when not the paper's generalist, so older records stay valid
            **({"deltas.base": deltas.base} if deltas.base != "generalist" else {}),
            **({"deltas.distill": deltas.distill,
                "deltas.distill_temperature": deltas.distill_temperature}
               if deltas.distill else {}),
            "deltas.bits": bits_tag(bits), "deltas.from_stage": deltas.from_stage,
            "deltas.train_batchnorm": deltas.train_batchnorm,
            "deltas.epochs": (deltas.epochs or config.train.specialist_epochs or
                              config.train.epochs),
            "deltas.learning_rate": deltas.learning_rate,
            "deltas.weight_decay": deltas.weight_decay,
            # recorded only when on, so records made before the setting existed stay valid
            **({"deltas.catch_all": deltas.catch_all} if deltas.catch_all else {})}


def record_settings(stage_dir: str | Path, settings: dict[str, Any]) -> None:
    """Writes a stage's ``settings.json`` (call it before the stage trains)."""
    atomic_write_text(Path(stage_dir) / SETTINGS_FILE,
                      json.dumps(settings, indent=2, sort_keys=True) + "\n")


def differences(stage_dir: str | Path, settings: dict[str, Any]) -> list[str]:
    """``key: recorded -> wanted`` for each setting in which a stage folder differs.

    Empty for a folder that holds nothing yet. A folder with training files but no
    record (made before stages recorded their settings) differs as a whole.
    """
    stage_dir = Path(stage_dir)
    path = stage_dir / SETTINGS_FILE
    if not path.is_file():
        has_work = stage_dir.is_dir() and any(p.name != "logs" for p in stage_dir.iterdir())
        return ["(no settings.json: trained by an older supersub_tf)"] if has_work else []
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: unreadable ({err}); delete that stage folder") from None
    recorded = _relevant(recorded)
    keys = sorted(set(recorded) | set(settings))
    return [f"{k}: {recorded.get(k, '(unset)')!r} -> {settings.get(k, '(unset)')!r}"
            for k in keys if recorded.get(k) != settings.get(k)]


def planned_stages(config: RunConfig, run_dir: str | Path) -> dict[Path, dict[str, Any]]:
    """Every stage folder the config's networks would reuse, with the settings wanted.

    Specialists and delta specialists are found on disk (one folder per superclass), so
    no dataset has to be read to check a run.
    """
    layout = RunLayout(run_dir)
    kinds = set(config.networks)
    stages: dict[Path, dict[str, Any]] = {}
    if "vanilla" in kinds or ("supersub" in kinds and config.deltas.base == "vanilla"):
        stages[layout.vanilla] = network_settings(config, "vanilla")
    if "generalist" in kinds or ("supersub" in kinds and config.deltas.base == "generalist"):
        stages[layout.generalist] = network_settings(config, "generalist")
    if "specialists" in kinds:
        for folder in sorted(layout.specialists.glob("*/")):
            stages[folder] = network_settings(config, "specialist")
    if "supersub" in kinds:
        for bits in config.deltas.bits:
            for folder in sorted(layout.deltas(bits).glob("*/")):
                stages[folder] = delta_settings(config, bits)
    return stages


def stale_stages(config: RunConfig, run_dir: str | Path) -> dict[Path, list[str]]:
    """Stage folder -> differing settings, for each stale stage of the run."""
    found = {}
    for folder, settings in planned_stages(config, run_dir).items():
        diffs = differences(folder, settings)
        if diffs:
            found[folder] = diffs
    return found


def ensure_fresh(config: RunConfig, run_dir: str | Path, retrain: bool = False,
                 log: Callable[[str], None] = print) -> list[Path]:
    """Refuses a run folder with stale stages, or (``retrain``) deletes exactly those.

    Returns:
        The stage folders deleted (empty when everything was fresh).

    Raises:
        StaleRunError: One line naming the stale stages, each differing setting and the
            two ways out (another run name, or ``--retrain``).
    """
    stale = stale_stages(config, run_dir)
    if stale and not retrain:
        raise StaleRunError(_message(Path(run_dir), stale))
    for folder in stale:
        log(f"[retrain] {folder} was trained with other settings; training it again")
        shutil.rmtree(folder)
    return list(stale)


def _message(run_dir: Path, stale: dict[Path, list[str]]) -> str:
    groups: dict[tuple[str, ...], list[Path]] = {}
    for folder, diffs in stale.items():
        groups.setdefault(tuple(diffs), []).append(folder.relative_to(run_dir))
    parts = [f"{_folders(names)} ({'; '.join(diffs)})" for diffs, names in groups.items()]
    return (f"{run_dir} holds networks trained with other settings: {' | '.join(parts)}. "
            "Use another run name (--set name=...) or add --retrain to train exactly these "
            "stages again")


def _folders(names: list[Path]) -> str:
    """``vanilla, specialists/* (10), deltas/8bit/* (10)``: one entry per stage kind."""
    by_parent: dict[Path, list[Path]] = {}
    for name in names:
        by_parent.setdefault(name.parent, []).append(name)
    shown = []
    for parent, children in by_parent.items():
        if parent == Path(".") or len(children) == 1:
            shown += [str(c) for c in children]
        else:
            shown.append(f"{parent}/* ({len(children)})")
    return ", ".join(shown)
