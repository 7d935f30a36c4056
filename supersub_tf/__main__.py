"""``python -m supersub_tf``: see :mod:`supersub_tf.cli`."""

import sys

from supersub_tf.cli import main

sys.exit(main())
