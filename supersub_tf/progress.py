"""Progress of long loops (``predict`` over many files, export conversions, studies).

Training already prints a line per epoch (Keras); the other long loops use
:class:`Progress`:

* where a display updates in place (a terminal, or a Jupyter notebook), a ``tqdm`` bar on
  the standard error, removed when the loop ends;
* elsewhere (a log file, CI, a pipe), one plain line per step, ``[label] 3/11 models``,
  at most one every ``interval`` seconds, the last step always.

Progress goes to the standard error, so ``predict --format json > out.json`` stays clean.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")


def is_interactive(stream: IO[str]) -> bool:
    """True where a progress bar can redraw in place: a terminal, or a notebook's kernel
    (it renders carriage returns on the standard error)."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):
        return False
    if "IPython" not in sys.modules:  # never imported: not a notebook
        return False
    from IPython import get_ipython

    # A Jupyter kernel's shell, not merely ipykernel imported (papermill, tests)
    return type(get_ipython()).__name__ == "ZMQInteractiveShell"


class Progress:
    """Counts the steps of one loop and shows them (see the module docstring).

    Args:
        total: The number of steps (units) in the loop.
        label: What runs, e.g. ``predict`` or ``litert``.
        unit: What a step is, e.g. ``images`` (shown after the count).
        interval: Seconds between two plain lines (the last step is always shown); a
            bar redraws at most every ``min(interval, 0.1)`` seconds.
        stream: Where to write (default the standard error at the time of the call).
        interactive: Bar or plain lines (default: :func:`is_interactive` of ``stream``).
    """

    def __init__(self, total: int, label: str, unit: str = "", interval: float = 5.0,
                 stream: IO[str] | None = None, interactive: bool | None = None) -> None:
        self.total, self.label, self.unit, self.interval = int(total), label, unit, interval
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._last = -float("inf")
        self._bar = None
        if interactive if interactive is not None else is_interactive(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=f"[{label}]", unit=f" {unit}" if unit
                             else "it", file=self.stream, leave=False, dynamic_ncols=True,
                             mininterval=min(interval, 0.1))

    def update(self, steps: int = 1) -> None:
        """Records ``steps`` more done."""
        self.done += steps
        if self._bar is not None:
            self._bar.update(steps)
            return
        now = time.monotonic()
        if self.done >= self.total or now - self._last >= self.interval:
            self._last = now
            unit = f" {self.unit}" if self.unit else ""
            print(f"[{self.label}] {self.done:,}/{self.total:,}{unit}", file=self.stream,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(items: Iterable[T], label: str, total: int | None = None, unit: str = "",
             **kwargs) -> Iterator[T]:
    """Yields ``items``, one :class:`Progress` step each (``total`` defaults to
    ``len(items)``)."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    with Progress(len(items) if total is None else total, label, unit, **kwargs) as bar:
        for item in items:
            yield item
            bar.update()
