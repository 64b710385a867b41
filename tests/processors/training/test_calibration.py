"""Expected calibration error: top-label confidence against accuracy, 15 equal bins."""

from __future__ import annotations

import numpy as np
import pytest

from processors.training.train import expected_calibration_error as ece


def test_hand_computed_cases() -> None:
    # Two rows, two bins: (0.9 right) |1 - 0.9| / 2 + (0.6 wrong) |0 - 0.6| / 2 = 0.35.
    assert ece(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1])) == pytest.approx(0.35)
    # Both in one bin (0.8, 0.867]: accuracy 1/2, confidence 0.825 -> 0.325.
    probs = np.array([[0.81, 0.19], [0.84, 0.16]])
    assert ece(probs, np.array([0, 1])) == pytest.approx(0.325)
    # All right at confidence 1: perfectly calibrated.
    assert ece(np.eye(3), np.arange(3)) == pytest.approx(0.0)
    # All wrong at confidence 1: as bad as it gets.
    assert ece(np.eye(3), np.array([1, 2, 0])) == pytest.approx(1.0)


def test_fifteen_equal_width_bins_with_closed_upper_edges() -> None:
    y = np.array([0, 1])  # the first row right, the second wrong

    def rows(a: float, b: float) -> np.ndarray:
        return np.array([[a, 1 - a], [b, 1 - b]])

    def separate(a: float, b: float) -> float:
        return 0.5 * (1 - a) + 0.5 * b

    def pooled(a: float, b: float) -> float:
        return abs(0.5 - (a + b) / 2)

    # 0.86 and 0.88: apart with 15 bins ((0.8, 0.867] and (0.867, 0.933]), one bin of 10.
    assert ece(rows(0.86, 0.88), y) == pytest.approx(separate(0.86, 0.88))
    assert ece(rows(0.86, 0.88), y, bins=10) == pytest.approx(pooled(0.86, 0.88))
    # A confidence on an edge closes the bin below it; just above opens the next one.
    edge = float(np.linspace(0.0, 1.0, 16)[13])
    assert ece(rows(edge, edge + 1e-9), y) == pytest.approx(separate(edge, edge + 1e-9))
    assert ece(rows(edge - 1e-9, edge), y) == pytest.approx(pooled(edge - 1e-9, edge))


def test_a_perfectly_calibrated_model_scores_near_zero() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    confidence = rng.uniform(0.5, 1.0, n)
    probs = np.stack([confidence, 1 - confidence], axis=1)
    y = np.where(rng.uniform(size=n) < confidence, 0, 1)  # right with probability = confidence
    assert ece(probs, y) < 0.01
    overconfident = np.stack([np.full(n, 0.99), np.full(n, 0.01)], axis=1)
    assert ece(overconfident, y) > 0.2
