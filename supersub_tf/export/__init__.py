"""Deployment: the Super-Sub system as one TF SavedModel and as LiteRT (TFLite) int8 models.

* :mod:`supersub_tf.export.savedmodel`: one SavedModel running both stages in its graph,
  with the deltas inside in their quantized form;
* :mod:`supersub_tf.export.tflite`: full-integer int8 ``.tflite`` models for the
  generalist and each specialist, plus a manifest;
* :mod:`supersub_tf.export.litert_runtime`: the two-stage pipeline over those files
  with only ``ai_edge_litert`` and numpy (no TensorFlow).
"""
