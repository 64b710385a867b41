"""Named strategies that merge several models' answers on one task into one.

Each strategy takes the members' probability matrices (rows: messages, columns: the
task's canonical labels, in the same order for every member) and their weights, and
returns one matrix of the same shape whose row-wise argmax is the merged label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Strategy = Callable[[Sequence[np.ndarray], Sequence[float]], np.ndarray]


def weighted_mean(probabilities: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Average the members' probabilities, each weighted; the merged scores sum to 1.

    >>> a = np.array([[0.9, 0.1]]); b = np.array([[0.2, 0.8]])
    >>> weighted_mean([a, b], [3.0, 1.0]).round(3).tolist()
    [[0.725, 0.275]]
    """
    w = np.asarray(weights, dtype=np.float64)
    stacked = np.stack(probabilities)  # members x rows x labels
    return np.tensordot(w / w.sum(), stacked, axes=1)


def vote(probabilities: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Each member casts its weight for its top label; scores are vote shares.

    Ties between labels go to the one with the higher mean probability, so the
    result never depends on member order.

    >>> a = np.array([[0.6, 0.4]]); b = np.array([[0.3, 0.7]]); c = np.array([[0.9, 0.1]])
    >>> vote([a, b, c], [1, 1, 1]).round(3).tolist()
    [[0.667, 0.333]]
    """
    w = np.asarray(weights, dtype=np.float64)
    stacked = np.stack(probabilities)
    n_labels = stacked.shape[2]
    ballots = np.eye(n_labels)[stacked.argmax(axis=2)]  # members x rows x labels
    shares = np.tensordot(w / w.sum(), ballots, axes=1)
    # A tie-break far below one vote's share: the mean probability, scaled down.
    tie_break = stacked.mean(axis=0) * (1e-6 * w.min() / w.sum())
    shares = shares + tie_break
    return shares / shares.sum(axis=1, keepdims=True)


STRATEGIES: dict[str, Strategy] = {"vote": vote, "weighted_mean": weighted_mean}
