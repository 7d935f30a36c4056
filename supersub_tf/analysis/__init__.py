"""What a network's mistakes say about the class hierarchy (Wen et al., 2022).

:mod:`~supersub_tf.analysis.metrics` measures the misclassifications (accuracies,
confusion matrices, within- vs across-superclass errors, mistake severity) on numpy
arrays; :mod:`~supersub_tf.analysis.plots` draws them as PNG files without pyplot.
Neither imports TensorFlow or matplotlib until a function needs it.
"""

from supersub_tf.analysis.metrics import (analyze, chance_within_share, confusion_matrix,
                                          error_breakdown, lca_height, mistake_severity,
                                          most_confused_pairs, per_superclass_accuracy,
                                          restricted_accuracy, superclass_accuracy,
                                          superclass_confusion, superclass_probs,
                                          topk_accuracy)
from supersub_tf.analysis.plots import (plot_confusion, plot_misclassified,
                                        plot_specialists_vs_vanilla, plot_training_curves,
                                        read_history, row_normalize)

__all__ = ["analyze", "chance_within_share", "confusion_matrix", "error_breakdown",
           "lca_height", "mistake_severity", "most_confused_pairs", "per_superclass_accuracy",
           "plot_confusion", "plot_misclassified", "plot_specialists_vs_vanilla",
           "plot_training_curves", "read_history", "restricted_accuracy", "row_normalize",
           "superclass_accuracy", "superclass_confusion", "superclass_probs", "topk_accuracy"]
