"""Studies: many runs of the main job's stages, compared in one table and figure.

* :mod:`~supersub_tf.studies.scaling`: vanilla networks of growing size against Super-Sub
  systems, by parameters, FLOPs, latency and throughput (``python -m supersub_tf scale``);
* :mod:`~supersub_tf.studies.budget`: Super-Sub minus vanilla as the training budget
  grows (``python -m supersub_tf budget``).

Each study resumes from what it already finished and refuses points trained with other
settings (:mod:`supersub_tf.run.freshness`).
"""
