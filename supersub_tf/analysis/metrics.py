"""The misclassification analysis of Wen et al. (2022), on plain numpy arrays.

The paper's findings (i) "most errors of a vanilla network stay inside the true class's
superclass" and (ii) "a network that knows the superclass (a specialist) does better on
its subclasses" are measured here. Inputs are softmax outputs ``probs [N, C]`` and integer
fine labels ``[N]`` in a :class:`~supersub_tf.hierarchy.Hierarchy`'s label order; outputs
are python floats, ints, lists and dicts, so :func:`analyze`'s result goes straight to JSON.

Mistake severity follows "Making Better Mistakes" (Bertinetto et al., 2020): the height
of the lowest common ancestor of the true and the predicted class, both in the two-level
hierarchy and, when the class ids are WordNet ids, in the WordNet noun DAG.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from supersub_tf.accuracy import as_labels, as_probs, check_same_length, topk_accuracy
from supersub_tf.errors import DataError
from supersub_tf.hierarchy import Hierarchy
from supersub_tf.wordnet import WordNet

# ------------------------------------------------------------------------------ checks


def _fine_inputs(fine_probs: Any, fine_labels: Any, hierarchy: Hierarchy
                 ) -> tuple[np.ndarray, np.ndarray]:
    probs = as_probs(fine_probs, hierarchy.num_classes)
    labels = as_labels(fine_labels, hierarchy.num_classes, "fine labels")
    check_same_length(probs, labels, "probabilities and labels")
    return probs, labels


def _fine_pairs(fine_labels: Any, fine_predictions: Any, hierarchy: Hierarchy
                ) -> tuple[np.ndarray, np.ndarray]:
    labels = as_labels(fine_labels, hierarchy.num_classes, "fine labels")
    preds = as_labels(fine_predictions, hierarchy.num_classes, "fine predictions")
    check_same_length(labels, preds, "labels and predictions")
    return labels, preds


def _membership(hierarchy: Hierarchy) -> np.ndarray:
    """The ``[C, S]`` 0/1 matrix with a one where fine class c belongs to superclass s."""
    member = np.zeros((hierarchy.num_classes, hierarchy.num_superclasses), np.int64)
    member[np.arange(hierarchy.num_classes), hierarchy.fine_to_superclass] = 1
    return member


def _share(part: int, whole: int) -> float:
    return float(part / whole) if whole else 0.0


# ------------------------------------------------------------------------------ accuracy
# topk_accuracy (imported above, and part of this module's API) lives in
# supersub_tf.accuracy, below the training layer, which scores its networks with it.
# TensorFlow is imported only inside confusion_matrix, so that the rest of the analysis
# of saved predictions runs without loading it.


def confusion_matrix(labels: Any, predictions: Any, num_classes: int) -> np.ndarray:
    """Counts ``[C, C]`` (int64) of images with true class row and predicted class column.

    Computed by ``tf.math.confusion_matrix``, so it agrees with TensorFlow's metrics.
    """
    y = as_labels(labels, num_classes, "labels")
    p = as_labels(predictions, num_classes, "predictions")
    if len(y) != len(p):
        raise ValueError(f"labels and predictions: {len(y)} vs {len(p)} entries")
    import tensorflow as tf

    matrix = tf.math.confusion_matrix(y, p, num_classes=num_classes, dtype=tf.int64)
    return np.asarray(matrix.numpy(), dtype=np.int64)


def superclass_confusion(fine_confusion: Any, hierarchy: Hierarchy) -> np.ndarray:
    """Aggregates a fine ``[C, C]`` confusion matrix to superclasses ``[S, S]``.

    Entry ``(s, t)`` sums the block of true classes in ``s`` and predicted classes in
    ``t``: the number of images of superclass ``s`` predicted as some subclass of ``t``.
    """
    conf = np.asarray(fine_confusion)
    c = hierarchy.num_classes
    if conf.shape != (c, c):
        raise ValueError(f"fine confusion matrix must be [{c}, {c}], got {conf.shape}")
    member = _membership(hierarchy).astype(conf.dtype)
    return member.T @ conf @ member


def superclass_probs(fine_probs: Any, hierarchy: Hierarchy) -> np.ndarray:
    """Superclass probabilities ``[N, S]``: the sum of each superclass's fine probabilities."""
    probs = as_probs(fine_probs, hierarchy.num_classes)
    return probs @ _membership(hierarchy).astype(probs.dtype)


def superclass_accuracy(fine_probs: Any, fine_labels: Any, hierarchy: Hierarchy
                        ) -> dict[str, float]:
    """Superclass accuracy of a fine-grained (vanilla) network, read two ways.

    Returns:
        ``from_top1``: the superclass of the top-1 fine prediction is right;
        ``from_summed_probs``: the superclass with the largest summed probability is
        right. They differ when mass spread over a superclass's subclasses outweighs a
        single higher subclass elsewhere.
    """
    probs, labels = _fine_inputs(fine_probs, fine_labels, hierarchy)
    f2s = hierarchy.fine_to_superclass
    true_sup = f2s[labels]
    from_top1 = f2s[probs.argmax(axis=1)] == true_sup
    from_summed = superclass_probs(probs, hierarchy).argmax(axis=1) == true_sup
    return {"from_top1": float(from_top1.mean()), "from_summed_probs": float(from_summed.mean())}


def chance_within_share(fine_labels: Any, hierarchy: Hierarchy) -> float:
    """Share of errors that would stay inside the true superclass if errors were random.

    A uniformly random wrong class of an image of superclass ``s`` is one of its
    ``n_sub(s) - 1`` siblings with probability ``(n_sub(s) - 1) / (C - 1)``; this is the
    mean of that over the images, the baseline for the paper's finding (i).
    """
    labels = as_labels(fine_labels, hierarchy.num_classes, "fine labels")
    c = hierarchy.num_classes
    if c < 2 or not len(labels):
        return 0.0
    sizes = np.array([len(s.subclasses) for s in hierarchy.superclasses], np.float64)
    return float(np.mean((sizes[hierarchy.fine_to_superclass[labels]] - 1) / (c - 1)))


def error_breakdown(fine_labels: Any, fine_predictions: Any, hierarchy: Hierarchy
                    ) -> dict[str, Any]:
    """Splits the errors into within-superclass and across-superclass ones (finding (i)).

    Returns:
        ``images``, ``errors``, ``within`` (wrong subclass of the right superclass),
        ``across`` (wrong superclass), their shares of the errors ``within_share`` and
        ``across_share`` (0.0 without errors), and ``chance_within_share``, the within
        share uniformly random errors would have (see :func:`chance_within_share`).
    """
    labels, preds = _fine_pairs(fine_labels, fine_predictions, hierarchy)
    f2s = hierarchy.fine_to_superclass
    wrong = labels != preds
    same_sup = f2s[labels] == f2s[preds]
    errors = int(wrong.sum())
    within = int((wrong & same_sup).sum())
    across = errors - within
    return {"images": int(len(labels)), "errors": errors, "within": within, "across": across,
            "within_share": _share(within, errors), "across_share": _share(across, errors),
            "chance_within_share": chance_within_share(labels, hierarchy)}


def most_confused_pairs(fine_confusion: Any, hierarchy: Hierarchy, top: int = 10
                        ) -> list[dict[str, Any]]:
    """The ``top`` largest off-diagonal confusion counts, largest first.

    Ties are broken by true label, then predicted label (ascending), so the list is
    deterministic. Pairs that never occur (count 0) are not listed.

    Returns:
        One dict per pair: ``true``/``predicted`` (fine labels), ``true_id``/
        ``predicted_id``, ``true_name``/``predicted_name``, ``true_superclass``/
        ``predicted_superclass`` (names), ``count``, ``share`` (of the true class's
        images) and ``same_superclass``.
    """
    conf = np.asarray(fine_confusion)
    c = hierarchy.num_classes
    if conf.shape != (c, c):
        raise ValueError(f"fine confusion matrix must be [{c}, {c}], got {conf.shape}")
    off = conf.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    true_idx, pred_idx = np.nonzero(off)  # row-major: ascending (true, predicted)
    counts = off[true_idx, pred_idx]
    order = np.argsort(-counts, kind="stable")[:max(top, 0)]
    row_totals = conf.sum(axis=1)
    ids, names, sup_names = hierarchy.class_ids, hierarchy.class_names, hierarchy.superclass_names
    f2s = hierarchy.fine_to_superclass
    pairs = []
    for i in order:
        t, p = int(true_idx[i]), int(pred_idx[i])
        pairs.append({
            "true": t, "true_id": ids[t], "true_name": names[t],
            "predicted": p, "predicted_id": ids[p], "predicted_name": names[p],
            "true_superclass": sup_names[f2s[t]], "predicted_superclass": sup_names[f2s[p]],
            "count": int(counts[i]), "share": _share(int(counts[i]), int(row_totals[t])),
            "same_superclass": bool(f2s[t] == f2s[p]),
        })
    return pairs


def per_superclass_accuracy(fine_labels: Any, fine_predictions: Any, hierarchy: Hierarchy
                            ) -> list[dict[str, Any]]:
    """Per superclass, how its images fare: one dict per superclass in label order.

    Returns:
        ``superclass`` (name), ``images``, ``fine_accuracy`` (exact subclass right),
        ``superclass_accuracy`` (prediction inside this superclass), ``within_errors``
        and ``across_errors``. Accuracies are None for a superclass without images.
    """
    labels, preds = _fine_pairs(fine_labels, fine_predictions, hierarchy)
    f2s = hierarchy.fine_to_superclass
    rows = []
    for k, name in enumerate(hierarchy.superclass_names):
        mine = f2s[labels] == k
        n = int(mine.sum())
        right_fine = labels[mine] == preds[mine]
        right_sup = f2s[preds[mine]] == k
        rows.append({
            "superclass": name, "images": n,
            "fine_accuracy": float(right_fine.mean()) if n else None,
            "superclass_accuracy": float(right_sup.mean()) if n else None,
            "within_errors": int((~right_fine & right_sup).sum()),
            "across_errors": int((~right_sup).sum()),
        })
    return rows


def restricted_accuracy(fine_probs: Any, fine_labels: Any, hierarchy: Hierarchy,
                        superclass: int | str) -> float:
    """Accuracy of a vanilla network on one superclass's images, choosing among its subclasses.

    The superclass is given by an oracle: on the images of ``superclass`` the prediction
    is the argmax over that superclass's subclasses only. This is the fair comparison
    with a specialist, which sees the same images and the same choices.

    Raises:
        ValueError: If no image belongs to ``superclass``.
    """
    probs, labels = _fine_inputs(fine_probs, fine_labels, hierarchy)
    k = hierarchy.superclass_index(superclass)
    members = hierarchy.fine_labels_of(k)
    mine = hierarchy.fine_to_superclass[labels] == k
    if not mine.any():
        raise ValueError(f"no images of superclass {hierarchy.superclass_names[k]!r}")
    preds = members[probs[mine][:, members].argmax(axis=1)]
    return float(np.mean(preds == labels[mine]))


# ------------------------------------------------------------------------------ severity

_UP_DISTANCES: weakref.WeakKeyDictionary[WordNet, dict[str, dict[str, int]]] = (
    weakref.WeakKeyDictionary())


def _up_distances(wnid: str, wordnet: WordNet) -> dict[str, int]:
    """Shortest is-a distances from ``wnid`` to itself (0) and every ancestor; cached."""
    cache = _UP_DISTANCES.setdefault(wordnet, {})
    found = cache.get(wnid)
    if found is None:
        found, frontier, depth = {}, [wnid], 0
        while frontier:
            for w in frontier:
                found.setdefault(w, depth)
            depth += 1
            frontier = list(dict.fromkeys(
                p for w in frontier for p in wordnet.parents.get(w, ()) if p not in found))
        cache[wnid] = found
    return found


def lca_height(a: str, b: str, wordnet: WordNet) -> int:
    """Height of the lowest common ancestor of synsets ``a`` and ``b`` in WordNet.

    WordNet is a DAG (a synset may have several hypernyms), so "the" LCA is defined by
    shortest is-a paths: the height is the minimum, over common ancestors ``c`` (``a`` and
    ``b`` themselves included), of ``max(depth_to(a, c), depth_to(b, c))``, where
    ``depth_to`` counts the fewest is-a steps up. It is 0 for ``a == b``, 1 for siblings
    or a parent-child pair, and grows with how unrelated the two are (Bertinetto et al.,
    2020). Distances from each synset to its ancestors are cached per WordNet, so many
    pairs are cheap.

    Raises:
        DataError: If either synset is not in ``wordnet`` or they share no ancestor.
    """
    if a == b:
        wordnet.check_known([a])
        return 0
    wordnet.check_known([a, b])
    up_a, up_b = _up_distances(a, wordnet), _up_distances(b, wordnet)
    common = up_a.keys() & up_b.keys()
    if not common:
        raise DataError(f"synsets {a!r} and {b!r} share no ancestor in the WordNet read from "
                        f"{wordnet.source}")
    return min(max(up_a[c], up_b[c]) for c in common)


def mistake_severity(fine_labels: Any, fine_predictions: Any, hierarchy: Hierarchy,
                     wordnet: WordNet | None = None) -> dict[str, Any]:
    """How bad the mistakes are: mean LCA height over the misclassified images.

    Returns:
        ``errors``; ``mean_hierarchy_height`` (height in the two-level hierarchy: 1 for a
        wrong subclass of the right superclass, 2 across superclasses); and, when
        ``wordnet`` is given and holds every class id, ``mean_wordnet_height`` and
        ``wordnet_height_counts`` (``[{"height", "count"}]`` ascending by height).
        Means are None without errors; the WordNet entries are None (with the reason in
        ``wordnet_skipped``) when the class ids are not in ``wordnet``.
    """
    labels, preds = _fine_pairs(fine_labels, fine_predictions, hierarchy)
    wrong = labels != preds
    f2s = hierarchy.fine_to_superclass
    heights = np.where(f2s[labels[wrong]] == f2s[preds[wrong]], 1, 2)
    result: dict[str, Any] = {
        "errors": int(wrong.sum()),
        "mean_hierarchy_height": float(heights.mean()) if heights.size else None,
        "mean_wordnet_height": None, "wordnet_height_counts": None, "wordnet_skipped": None,
    }
    if wordnet is None:
        result["wordnet_skipped"] = "no WordNet given"
        return result
    missing = [i for i in hierarchy.class_ids if i not in wordnet]
    if missing:
        result["wordnet_skipped"] = (f"{len(missing)} class id(s) not in the WordNet from "
                                     f"{wordnet.source}, first {missing[0]!r}")
        return result
    ids = hierarchy.class_ids
    pair_height: dict[tuple[int, int], int] = {}
    wn_heights = []
    for t, p in zip(labels[wrong].tolist(), preds[wrong].tolist()):
        if (t, p) not in pair_height:
            pair_height[(t, p)] = lca_height(ids[t], ids[p], wordnet)
        wn_heights.append(pair_height[(t, p)])
    values, counts = np.unique(np.array(wn_heights, np.int64), return_counts=True)
    result["mean_wordnet_height"] = float(np.mean(wn_heights)) if wn_heights else None
    result["wordnet_height_counts"] = [{"height": int(h), "count": int(n)}
                                       for h, n in zip(values, counts)]
    return result


# ------------------------------------------------------------------------------ all


def _restricted_or_none(probs: np.ndarray, labels: np.ndarray, hierarchy: Hierarchy,
                        k: int) -> float | None:
    if not (hierarchy.fine_to_superclass[labels] == k).any():
        return None
    return restricted_accuracy(probs, labels, hierarchy, k)


def analyze(fine_probs: Any, fine_labels: Any, hierarchy: Hierarchy,
            wordnet: WordNet | None = None, top_pairs: int = 10) -> dict[str, Any]:
    """The whole misclassification analysis of a fine-grained network, JSON-ready.

    Predictions are the argmax of ``fine_probs``. The result holds only python floats,
    ints, strings, bools, None, lists and dicts with string keys.

    Returns:
        ``hierarchy``, ``images``, ``num_classes``, ``num_superclasses``,
        ``class_names``, ``superclass_names``; ``top1``, ``top5``; ``superclass_accuracy``
        (:func:`superclass_accuracy`); ``errors`` (:func:`error_breakdown`);
        ``per_superclass`` (:func:`per_superclass_accuracy` rows, each with
        ``vanilla_restricted_accuracy`` from :func:`restricted_accuracy`);
        ``most_confused_pairs``; ``severity`` (:func:`mistake_severity`);
        ``confusion`` (fine, nested lists) and ``superclass_confusion``.
    """
    probs, labels = _fine_inputs(fine_probs, fine_labels, hierarchy)
    preds = probs.argmax(axis=1)
    conf = confusion_matrix(labels, preds, hierarchy.num_classes)
    per_superclass = per_superclass_accuracy(labels, preds, hierarchy)
    for k, row in enumerate(per_superclass):
        row["vanilla_restricted_accuracy"] = _restricted_or_none(probs, labels, hierarchy, k)
    return {
        "hierarchy": hierarchy.name,
        "images": int(len(labels)),
        "num_classes": hierarchy.num_classes,
        "num_superclasses": hierarchy.num_superclasses,
        "class_names": hierarchy.class_names,
        "superclass_names": hierarchy.superclass_names,
        "top1": topk_accuracy(probs, labels, 1),
        "top5": topk_accuracy(probs, labels, 5),
        "superclass_accuracy": superclass_accuracy(probs, labels, hierarchy),
        "errors": error_breakdown(labels, preds, hierarchy),
        "per_superclass": per_superclass,
        "most_confused_pairs": most_confused_pairs(conf, hierarchy, top_pairs),
        "severity": mistake_severity(labels, preds, hierarchy, wordnet),
        "confusion": conf.tolist(),
        "superclass_confusion": superclass_confusion(conf, hierarchy).tolist(),
    }


__all__ = ["analyze", "chance_within_share", "confusion_matrix", "error_breakdown",
           "lca_height", "mistake_severity", "most_confused_pairs", "per_superclass_accuracy",
           "restricted_accuracy", "superclass_accuracy", "superclass_confusion",
           "superclass_probs", "topk_accuracy"]
