"""The built-in configs, shipped as package data: ``--config NAME`` reads ``NAME.yaml``.

``default`` (the main job), ``imagenet_gpu`` (full ImageNet on GPUs), ``cifar100``,
``scaling`` and ``scaling_base`` (the scaling study), ``budget`` (the budget study).
:func:`supersub_tf.config.resolve_config_path` finds them from any working directory
and from an installed wheel.
"""
