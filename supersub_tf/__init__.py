"""supersub_tf: Superclassing ImageNet and the Super-Sub framework in TensorFlow.

Importing the package selects tf_keras (Keras 2) as TensorFlow's Keras before TensorFlow
is imported, because tensorflow-model-optimization's quantization-aware training does not
support Keras 3. It also turns on oneDNN's CPU kernels, which train about twice as fast
on the CPUs this project is developed on (set ``TF_ENABLE_ONEDNN_OPTS=0`` to opt out).
TensorFlow itself is imported lazily by the modules that need it.
"""

import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from supersub_tf.errors import ConfigError, DataError, HierarchyError, SuperSubError  # noqa: E402
from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "Hierarchy", "HierarchyError", "Subclass", "SuperSubError",
           "Superclass", "__version__"]
