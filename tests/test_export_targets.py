"""The main job's exports are named by the run, not by the system: a rerun that would
export another system (another first bit width) refuses instead of replacing them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from supersub_tf.errors import ConfigError


def fake_export(folder: Path, record: str, key: str, source: Path) -> None:
    """An export folder as far as the check reads it: the source system it records."""
    folder.mkdir(parents=True)
    (folder / record).write_text(json.dumps({key: {"path": str(source)}}))


def test_a_rerun_of_another_bit_width_keeps_the_first_exports(tmp_path):
    from test_training import tiny_config

    from supersub_tf.run import check_export_targets, run_dir_of, run_pipeline

    config = tiny_config(tmp_path)
    config.networks = ["vanilla", "generalist", "supersub"]
    run_dir = run_dir_of(config)
    saved = Path(config.export.output_dir)
    fake_export(saved / "tiny", "supersub_export.json", "source",
                (run_dir / "systems" / "4bit").resolve())
    config.deltas.bits = [4, 8]
    check_export_targets(config, run_dir)  # the same system: replaced, as before
    config.deltas.bits = [8]
    message = (f"{saved / 'tiny'} holds the export of {(run_dir / 'systems' / '4bit').resolve()}"
               f"; this run would replace it with the export of "
               f"{(run_dir / 'systems' / '8bit').resolve()} (the first of deltas.bits): set "
               f"export.output_dir to another folder or use another run name, or delete "
               f"{saved / 'tiny'} to replace it")
    with pytest.raises(ConfigError) as caught:
        check_export_targets(config, run_dir)
    assert str(caught.value) == message
    # The main job refuses before it trains anything.
    with pytest.raises(ConfigError, match="holds the export of"):
        run_pipeline(config, log=lambda *_: None)
    assert not (run_dir / "vanilla").exists()
    # Without the SavedModel, the LiteRT export (its manifest records a relative path).
    config.export.savedmodel = False
    check_export_targets(config, run_dir)  # no LiteRT export yet
    fake_export(saved / "tiny_tflite", "manifest.json", "source_system",
                Path(os.path.relpath(run_dir / "systems" / "4bit")))
    with pytest.raises(ConfigError, match=r"tiny_tflite holds the export of .*4bit"):
        check_export_targets(config, run_dir)
    config.deltas.bits = [4]
    check_export_targets(config, run_dir)
