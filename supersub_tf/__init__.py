"""supersub_tf: Superclassing ImageNet and the Super-Sub framework in TensorFlow.

Importing the package selects tf_keras (Keras 2) as TensorFlow's Keras before TensorFlow
is imported, because tensorflow-model-optimization's quantization-aware training does not
support Keras 3. TensorFlow itself is imported lazily by the modules that need it.

oneDNN's CPU kernels stay **off** unless you set ``TF_ENABLE_ONEDNN_OPTS=1`` yourself.
They train about twice as fast on 2-core AMD EPYC machines, but TensorFlow 2.21's oneDNN
path corrupts the heap on ordinary inputs (narrow convolutions at 48-64 px, batches of
37, 39, 41 or 103 images at 32 px: SIGSEGV or "double free or corruption", no Python
traceback; upstream tensorflow/tensorflow#117700 and #123109, fix not merged in 2.21).
A speed-up that can kill a run without a message is not a default; TensorFlow itself
turns oneDNN on for some Intel CPUs, so the project sets it off explicitly.

TensorFlow's C++ log stops at warnings (``TF_CPP_MIN_LOG_LEVEL=2``), and on a machine
without an NVIDIA driver at errors too (``3``): there its only error line is the CUDA
probe's "failed call to cuInit", printed by every process that looks for devices, and
every real failure still raises a Python exception. Set the variable yourself to see
more.
"""

import os as _os

_NO_NVIDIA_DRIVER = not _os.path.exists("/proc/driver/nvidia/version")

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # opt-in only: see above
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if _NO_NVIDIA_DRIVER else "2")

from supersub_tf.errors import ConfigError, DataError, HierarchyError, SuperSubError  # noqa: E402
from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "Hierarchy", "HierarchyError", "Subclass", "SuperSubError",
           "Superclass", "__version__"]
