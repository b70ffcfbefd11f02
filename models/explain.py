"""Why a LightGBM model scored a row as it did: per-feature path attributions, fast enough per request.

`PathExplainer(booster).contributions(X)` has the layout of LightGBM's `pred_contrib` (TreeSHAP):
one column per feature plus the bias, adding up to the raw score. The estimator
(`models.calibrated.CalibratedBooster.path_explainer`) builds one for its booster; serving asks the
estimator, never the booster.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


class PathExplainer:
    """Per-feature path attributions of a LightGBM booster (Saabas / treeinterpreter), in log-odds.

    For every leaf of every tree, the change of the node value along the path from the root is
    credited to the feature split on; a row's attribution is the sum over its leaves. Like SHAP,
    attributions plus `bias` add up exactly to the raw score; unlike SHAP they are not Shapley
    values. Why: TreeSHAP (`pred_contrib`) costs ~0.3 ms per row per 50 trees, this costs one
    `pred_leaf` call plus a table lookup (~0.05 ms for a few rows), whatever the number of trees.
    """

    def __init__(self, booster: object) -> None:
        self.booster = booster
        dump = booster.dump_model()  # type: ignore[attr-defined]
        trees = dump["tree_info"]
        n_features = booster.num_feature()  # type: ignore[attr-defined]
        width = max((t["num_leaves"] for t in trees), default=1)
        table = np.zeros((len(trees), width, n_features))
        bias = 0.0
        for t, info in enumerate(trees):
            root = info["tree_structure"]
            if "split_feature" not in root:  # a one-leaf tree: a constant
                bias += float(root.get("leaf_value", 0.0))
                continue
            bias += float(root["internal_value"])
            stack = [(root, np.zeros(n_features))]
            while stack:
                node, acc = stack.pop()
                for side in ("left_child", "right_child"):
                    child = node[side]
                    leaf = "split_feature" not in child
                    value = child["leaf_value"] if leaf else child["internal_value"]
                    path = acc.copy()
                    path[node["split_feature"]] += value - node["internal_value"]
                    if leaf:
                        table[t, child.get("leaf_index", 0)] = path
                    else:
                        stack.append((child, path))
        self.table = table
        self.bias = bias
        self.n_features = n_features
        # The table's non-zero cells per (tree, leaf), tree-major (CSR): a path touches a few
        # features, so a row's attributions are a weighted bincount of ~depth x trees cells instead
        # of a sum over a dense (trees x features) slice of a table of ~2 MB (measured in a request
        # sequence, where the table is not in cache: ~0.1 ms per request).
        width = table.shape[1]
        flat = table.reshape(len(trees) * width, n_features)
        cell, feature = np.nonzero(flat)
        self._starts = np.searchsorted(cell, np.arange(len(trees) * width + 1)).astype(np.int64)
        self._feature = feature.astype(np.int64)
        self._weight = flat[cell, feature]
        self._width = width
        self._leaf_base = np.arange(len(trees), dtype=np.int64) * width
        self._leaves = _SingleRowLeaves.create(booster, len(trees))

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """(rows, trees) leaf index of each float32 row in each tree, as `booster.predict(pred_leaf=True)`."""
        if self._leaves is not None and len(X) <= _SINGLE_ROW_MAX:
            return self._leaves(X)
        return self.booster.predict(X, pred_leaf=True, num_threads=1).reshape(len(X), -1).astype(np.int64)  # type: ignore[attr-defined]

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """(rows, features + 1): attributions, last column the bias (the layout of `pred_contrib`).

        Each (row, feature) sums its trees' cells in tree order, as the dense sum over the trees
        does (the cells left out are exact zeros), so the result is the same to the last bit.
        """
        leaves = self.leaves(X)
        n, f = len(X), self.n_features
        cells = (self._leaf_base[None, :] + leaves).ravel()  # row-major, tree order within a row
        lo, hi = self._starts[cells], self._starts[cells + 1]
        count = hi - lo
        total = int(count.sum())
        at = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(total)  # the cells' entries, in order
        row = np.repeat(np.repeat(np.arange(n, dtype=np.int64), leaves.shape[1]), count)
        attributions = np.bincount(row * f + self._feature[at], weights=self._weight[at], minlength=n * f).reshape(n, f)
        return np.column_stack([attributions, np.full(n, self.bias)])

    def dense_contributions(self, X: np.ndarray) -> np.ndarray:
        """`contributions` from the dense table and `Booster.predict` (the reference, for tests)."""
        leaves = self.booster.predict(X, pred_leaf=True, num_threads=1).reshape(len(X), -1)  # type: ignore[attr-defined]
        trees = np.arange(leaves.shape[1])
        attributions = self.table[trees, leaves].sum(axis=1)
        return np.column_stack([attributions, np.full(len(X), self.bias)])


#: Up to this many rows (a request's shown offers) the leaves come from LightGBM's single-row path.
_SINGLE_ROW_MAX = 32


class _SingleRowLeaves:
    """Leaf indices of a few float32 rows through LightGBM's single-row fast path.

    Why: `Booster.predict(pred_leaf=True)` on the 3 shown offers of a request builds a predictor
    and walks the Python wrapper per call (measured in a request sequence: ~0.17 ms per call);
    `LGBM_BoosterPredictForMatSingleRowFast` keeps the predictor set up once here. Same library,
    same trees, same leaves: `create` checks that on random rows (with NaNs, zeros and integer
    codes) against `Booster.predict` and returns None (the caller keeps `predict`) on any
    difference or C API failure. LightGBM serialises single-row calls on a booster with a lock.
    """

    def __init__(self, booster: object, n_trees: int) -> None:
        import ctypes

        from lightgbm.basic import _LIB, _c_str, _safe_call

        self._ctypes, self._lib, self._safe_call = ctypes, _LIB, _safe_call
        self.booster = booster  # keeps the booster (and its handle) alive as long as this config
        self.n_features = int(booster.num_feature())  # type: ignore[attr-defined]
        self.n_trees = n_trees
        best = int(getattr(booster, "best_iteration", 0) or 0)  # what Booster.predict uses by default
        handle = ctypes.c_void_p()
        _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
            booster._handle,  # type: ignore[attr-defined]  # private-ok: LightGBM C API handle
            ctypes.c_int(2),  # C_API_PREDICT_LEAF_INDEX
            ctypes.c_int(0),  # start_iteration
            ctypes.c_int(best),  # num_iteration (<= 0: all)
            ctypes.c_int(0),  # C_API_DTYPE_FLOAT32
            ctypes.c_int32(self.n_features),
            _c_str("num_threads=1"),
            ctypes.byref(handle),
        ))
        self._handle = handle
        self._free = _LIB.LGBM_FastConfigFree
        self._predict = _LIB.LGBM_BoosterPredictForMatSingleRowFast
        self._void_p = ctypes.c_void_p

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value:
            self._free(handle)
            self._handle = None

    @classmethod
    def create(cls, booster: object, n_trees: int) -> _SingleRowLeaves | None:
        """The fast path if it gives `Booster.predict`'s leaves on a check sample, else None."""
        try:
            fast = cls(booster, n_trees)
            rng = np.random.default_rng(0)
            shape = (64, fast.n_features)
            X = rng.normal(size=shape) * rng.choice([0.1, 1.0, 10.0, 100.0], size=(shape[0], 1))
            X = np.where(rng.random(shape) < 0.3, np.round(np.abs(X)), X)  # integer codes (categorical splits)
            X[rng.random(shape) < 0.1] = 0.0
            X[rng.random(shape) < 0.1] = np.nan
            X = X.astype(np.float32)
            want = booster.predict(X, pred_leaf=True, num_threads=1).reshape(len(X), -1)  # type: ignore[attr-defined]
            if want.shape[1] != n_trees or not np.array_equal(fast(X), want):
                log.warning("LightGBM's single-row leaf path disagrees with Booster.predict: not used")
                return None
            return fast
        except Exception as exc:  # noqa: BLE001 - any C API mismatch: Booster.predict still answers
            log.warning("LightGBM's single-row leaf path unavailable (%s): using Booster.predict", type(exc).__name__)
            return None

    def __call__(self, X: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(X, dtype=np.float32)
        out = np.empty((len(rows), self.n_trees), dtype=np.float64)
        out_len = self._ctypes.c_int64(0)
        # Row pointers from the base addresses (numpy's `.ctypes.data_as` per row cost ~3 us each).
        void_p, row_at, out_at = self._void_p, rows.ctypes.data, out.ctypes.data
        row_step, out_step = rows.strides[0], out.strides[0]
        length = self._ctypes.byref(out_len)
        for i in range(len(rows)):
            self._safe_call(self._predict(self._handle, void_p(row_at + i * row_step), length, void_p(out_at + i * out_step)))
            if out_len.value != self.n_trees:
                raise ValueError(f"LightGBM returned {out_len.value} leaves for {self.n_trees} trees")
        return out.astype(np.int64)
