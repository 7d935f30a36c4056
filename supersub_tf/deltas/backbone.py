"""The backbone record of a stored system: what rebuilds its network and feeds it images.

A system's ``manifest.json`` keeps it as a JSON object (``"backbone": {...}``), unchanged
since the first systems; :class:`Backbone` is that object typed: the one place that
reads it (old manifests included) and the one that builds it for a run
(:meth:`Backbone.from_config`). The exports, ``predict`` and the command line read its
attributes instead of string keys cast where they are used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from supersub_tf.choices import NORMALIZATIONS
from supersub_tf.errors import StorageError

if TYPE_CHECKING:
    from supersub_tf.config import RunConfig

#: The normalization of a system whose backbone records none: ``data.normalization``'s
#: default, the only mode of the runs that wrote such systems.
DEFAULT_NORMALIZATION = "imagenet"

_FIELDS = ("model", "width", "image_size", "normalization", "num_classes", "parameters")


@dataclasses.dataclass(frozen=True)
class Backbone:
    """The network a stored system's base (stage 1) and specialists are built on.

    Attributes:
        model: A registered model name (``models.create_model``).
        width: Its channel width multiplier.
        image_size: The side of the square images it takes, in pixels.
        normalization: How its input pixels are scaled (``choices.NORMALIZATIONS``).
        num_classes: Outputs of the stage-1 head (superclasses, or fine classes on a
            vanilla base); None until the system is saved.
        parameters: The stage-1 network's parameter count; None until saved.
        extra: Any other keys a manifest holds, kept as they are.
    """

    model: str
    width: float
    image_size: int
    normalization: str = DEFAULT_NORMALIZATION
    num_classes: int | None = None
    parameters: int | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise StorageError(f"backbone normalization {self.normalization!r} is none of "
                               f"{', '.join(NORMALIZATIONS)}")
        if (isinstance(self.image_size, bool) or not isinstance(self.image_size, int)
                or self.image_size < 1):
            raise StorageError(f"backbone image_size must be a positive int, got "
                               f"{self.image_size!r}")

    @classmethod
    def from_config(cls, config: RunConfig) -> Backbone:
        """The backbone of a run's networks (``num_classes`` and ``parameters`` are set
        when the system is saved)."""
        return cls(model=config.train.model, width=config.train.width,
                   image_size=config.data.image_size,
                   normalization=config.data.normalization)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "backbone") -> Backbone:
        """Reads a stored backbone object, also one of an older manifest: ``image_size``
        may be a string there (``"64"``) and ``normalization`` absent
        (:data:`DEFAULT_NORMALIZATION`).

        Raises:
            StorageError: Naming ``source`` and the key: ``model``, ``width`` or
                ``image_size`` missing or of the wrong type, or an unknown normalization.
        """
        if not isinstance(data, Mapping):
            raise StorageError(f"{source}: the backbone is {type(data).__name__}, not an "
                               "object")
        missing = [key for key in ("model", "width", "image_size") if key not in data]
        if missing:
            raise StorageError(f"{source}: the backbone lacks {', '.join(missing)} (needs "
                               "model, width, image_size)")
        try:
            size = data["image_size"]
            if isinstance(size, str) and size.strip().isdigit():  # older manifests
                size = int(size)
            return cls(
                model=str(data["model"]), width=float(data["width"]), image_size=size,
                normalization=data.get("normalization", DEFAULT_NORMALIZATION),
                num_classes=None if data.get("num_classes") is None
                else int(data["num_classes"]),
                parameters=None if data.get("parameters") is None
                else int(data["parameters"]),
                extra={k: v for k, v in data.items() if k not in _FIELDS})
        except StorageError as err:  # (a ValueError too: caught first)
            raise StorageError(f"{source}: {err}") from None
        except (TypeError, ValueError) as err:
            raise StorageError(f"{source}: unreadable backbone {dict(data)} ({err})") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object a manifest stores (the keys of the first systems; ``None``
        counts are left out)."""
        out: dict[str, Any] = {"model": self.model, "width": self.width,
                               "image_size": self.image_size,
                               "normalization": self.normalization}
        if self.num_classes is not None:
            out["num_classes"] = self.num_classes
        if self.parameters is not None:
            out["parameters"] = self.parameters
        return {**out, **self.extra}
