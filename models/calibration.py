"""Monotone maps from a booster's raw probability to a calibrated one, as knots for `np.interp`.

Why not plain isotonic regression: its fit is a step function. Every raw score inside one flat
stretch (a pooled block of the pool-adjacent-violators algorithm) gets the same probability, so a
calibrated model on 23,570 real customers took 112 distinct values (issue 20): ties that throw
away the booster's ranking (AUC, top-k, the arbiter's order between offers).

**Centered isotonic regression** (CIR; Oron, A.P. and Flournoy, N., 2017, "Centered Isotonic
Regression: Point and Interval Estimation for Dose-Response Studies", Statistics in
Biopharmaceutical Research 9(3), 258-267; reference implementation: the R package `cir`,
`cirPAVA`) keeps isotonic regression's pooled block means and shrinks each flat stretch to a
single point, at the weighted mean of its scores, then interpolates linearly between those points.
The curve is strictly increasing between the first and last block centres, and it is the same
nonparametric estimator (no parametric shape is imposed on the booster's miscalibration); Oron and
Flournoy show a smaller estimation error than isotonic regression's in most of their simulations.

Two choices of ours, both for strictness over the whole (0, 1) range of a booster's output:
- the block means are squeezed affinely into [`EPS`, 1 - `EPS`] (a block with no positive
  becomes `EPS`, not 0; the old map clipped at the same bounds);
- the ends are anchored at (0, 0) and (1, 1): a raw score below the first centre or above the
  last is interpolated towards the limit of a probability instead of clipped (CIR leaves those
  boundary stretches flat, which for scores means ties among the least and the most likely rows).
So the map is strictly increasing on [0, 1]: the calibrated scores rank exactly as the raw ones
(same AUC), and calibration is what isotonic regression estimates, without its plateaus.

The result is a pair of knot arrays `(x, y)`, applied with `np.interp(raw, x, y)`: the same
representation `CalibratedBooster` has always pickled, so models fitted with the old step map
still load and score exactly as before.
"""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression, isotonic_regression

#: The calibrated block means are squeezed into [EPS, 1 - EPS] (the old isotonic map's clip bounds).
EPS = 1e-4

METHODS = ("centered_isotonic", "isotonic")


def centered_isotonic_knots(raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots `(x, y)` of the centered isotonic regression of labels `y` on scores `raw` in [0, 1].

    Both arrays are strictly increasing; `np.interp(s, x, y)` is the calibrated probability.
    """
    raw = np.asarray(raw, dtype=float)
    y = np.asarray(y, dtype=float)
    if raw.shape != y.shape or raw.ndim != 1 or len(raw) == 0:
        raise ValueError("raw and y must be non-empty 1-d arrays of the same length")
    # Tied scores must share one value: pool them first (count and positives per unique score).
    xs, inverse, counts = np.unique(raw, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=y, minlength=len(xs))
    fitted = isotonic_regression(sums / counts, sample_weight=counts.astype(float), increasing=True)
    # Flat stretches: runs of equal fitted values; each becomes one point at its weighted mean score.
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) > 0])
    weight = np.add.reduceat(counts.astype(float), starts)
    centres = np.add.reduceat(xs * counts, starts) / weight
    values = EPS + (1 - 2 * EPS) * fitted[starts]
    knots_x = np.r_[0.0, centres, 1.0]
    knots_y = np.r_[0.0, values, 1.0]
    # Anchors only where they extend the range (a score of exactly 0 or 1 already is a centre).
    keep = np.r_[True, np.diff(knots_x) > 0] & np.r_[True, np.diff(knots_y) > 0]
    return knots_x[keep], knots_y[keep]


def isotonic_knots(raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The step map nbo used until issue 20 (scikit-learn's isotonic thresholds, clipped at the
    ends): kept to compare against and for `CalibratedBooster(calibration="isotonic")`."""
    iso = IsotonicRegression(out_of_bounds="clip", y_min=EPS, y_max=1 - EPS).fit(raw, y)
    return np.asarray(iso.X_thresholds_, dtype=float), np.asarray(iso.y_thresholds_, dtype=float)


def calibration_knots(method: str, raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots of `method` (one of `METHODS`)."""
    if method == "centered_isotonic":
        return centered_isotonic_knots(raw, y)
    if method == "isotonic":
        return isotonic_knots(raw, y)
    raise ValueError(f"unknown calibration {method!r}; use one of {', '.join(METHODS)}")
