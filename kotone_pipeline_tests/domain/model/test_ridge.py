from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from kotone_pipeline.domain.model.ridge import fit_ridge


def _problem(seed: int = 3, n: int = 120, p_sparse: int = 300, p_dense: int = 8):
    rng = np.random.default_rng(seed)
    sparse = sp.random(n, p_sparse, density=0.05, random_state=seed, format="csr")
    dense = rng.normal(size=(n, p_dense))
    y = rng.normal(size=(n, 6)) * 3 + 5
    return sparse, dense, y


def _exact(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The textbook solution: centre, solve the normal equations, recover the intercept."""
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    xc = x - xm
    coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym)).T
    return coef, ym - xm @ coef.T


@pytest.mark.parametrize("alpha", [0.05, 0.3, 3.0])
def test_a_tight_tolerance_gives_the_exact_ridge_solution(alpha: float) -> None:
    sparse, dense, y = _problem()
    coef, intercept, iterations = fit_ridge(sparse, dense, y, alpha, tol=1e-12)
    exact_coef, exact_intercept = _exact(np.hstack([sparse.toarray(), dense]), y, alpha)
    np.testing.assert_allclose(coef, exact_coef, atol=1e-8)
    np.testing.assert_allclose(intercept, exact_intercept, atol=1e-8)
    assert 0 < iterations < 2000


def test_the_default_tolerance_predicts_within_a_hundredth_of_the_exact_solution() -> None:
    sparse, dense, y = _problem(seed=5, n=300)
    x = np.hstack([sparse.toarray(), dense])
    coef, intercept, _ = fit_ridge(sparse, dense, y, 0.3)
    exact_coef, exact_intercept = _exact(x, y, 0.3)
    assert np.abs((x @ coef.T + intercept) - (x @ exact_coef.T + exact_intercept)).max() < 0.01


def test_either_block_may_be_missing_and_bad_input_is_refused() -> None:
    sparse, dense, y = _problem()
    coef, _, _ = fit_ridge(sparse, None, y, 1.0, tol=1e-12)
    assert coef.shape == (6, sparse.shape[1])
    np.testing.assert_allclose(coef, _exact(sparse.toarray(), y, 1.0)[0], atol=1e-8)
    coef, _, _ = fit_ridge(None, dense, y[:, 0], 1.0, tol=1e-12)
    assert coef.shape == (1, dense.shape[1])
    with pytest.raises(ValueError, match="alpha must be positive"):
        fit_ridge(sparse, dense, y, 0.0)
    with pytest.raises(ValueError, match="rows"):
        fit_ridge(sparse, dense[:5], y, 1.0)
