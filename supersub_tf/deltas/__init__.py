"""Delta specialists: a specialist is the generalist's weights plus small deltas.

* :mod:`~supersub_tf.deltas.delta_set`: the deltas of one specialist as data
  (k-bit integers with per-output-channel scales, plus the small weights it owns);
* :mod:`~supersub_tf.deltas.layers`: Keras layers holding a frozen base kernel and a
  trainable delta;
* :mod:`~supersub_tf.deltas.quantization`: quantization-aware training of the deltas
  with tensorflow-model-optimization;
* :mod:`~supersub_tf.deltas.specialist`: building a delta specialist from a trained
  generalist, and reading its deltas back out;
* :mod:`~supersub_tf.deltas.storage`: the on-disk format of a whole system and its
  storage accounting (``a*N + 1`` networks).
"""
