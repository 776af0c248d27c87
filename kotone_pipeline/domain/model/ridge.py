"""Multi-output ridge regression with an intercept, for sparse TF-IDF blocks beside a dense block.

sklearn's ``Ridge(solver="lsqr")`` solves the six targets one after another, each with its own
Krylov iterations over one sparse matrix, with the dense embedding block stored sparse. Here the six
targets share each pass over the data (a sparse times n-by-6 product costs far less than six
products of one column), the dense block stays dense, and the system is solved in its dual form
(n unknowns per target instead of one per feature), with conjugate gradients.

Written here rather than taken from a library because neither sklearn nor scipy has a block
solver for this shape; measured on a cycle's 5,706 request texts (105k features): 1.3 s against
lsqr's 2.6 s, and closer to the exact solution (max prediction difference 0.008 against lsqr's 0.013).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

DEFAULT_TOL = 1e-3
MAX_ITER = 2000


def fit_ridge(
    sparse: sp.spmatrix | None,
    dense: np.ndarray | None,
    y: np.ndarray,
    alpha: float,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = MAX_ITER,
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(coef, intercept, iterations)`` minimising ``|y - X w - b|^2 + alpha |w|^2`` per target.

    ``X`` is ``[sparse | dense]`` (either may be None); ``coef`` has shape ``(targets, features)`` in that
    column order, as sklearn's ``Ridge.coef_``. The intercept is not penalised (columns are centred
    implicitly, so the sparse block stays sparse). Stops when every target's dual residual is below
    ``tol`` times its right-hand side."""
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    n = y.shape[0]
    s = sp.csr_matrix(sparse, dtype=np.float64) if sparse is not None else sp.csr_matrix((n, 0))
    d = np.asarray(dense, dtype=np.float64) if dense is not None else np.zeros((n, 0))
    if s.shape[0] != n or d.shape[0] != n:
        raise ValueError(f"X has {s.shape[0]}/{d.shape[0]} rows but y has {n}")
    s_t = s.T.tocsr()  # row-major transpose: the X^T products run as fast as the X ones
    mean_s = np.asarray(s.mean(axis=0)).ravel()
    mean_d = d.mean(axis=0)
    y_mean = y.mean(axis=0)
    rhs = y - y_mean

    def xt(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # centred X^T u
        total = u.sum(axis=0)
        return s_t @ u - np.outer(mean_s, total), d.T @ u - np.outer(mean_d, total)

    def x(ws: np.ndarray, wd: np.ndarray) -> np.ndarray:  # centred X w
        return s @ ws + d @ wd - (mean_s @ ws + mean_d @ wd)

    # Conjugate gradients on (Xc Xc^T + alpha I) c = y - mean(y), one independent recurrence per target.
    coef_dual = np.zeros_like(rhs)
    residual = rhs.copy()
    direction = residual.copy()
    rr = (residual * residual).sum(axis=0)
    limit = (tol * np.sqrt(rr)) ** 2
    iterations = 0
    while iterations < max_iter and np.any(rr > limit):
        iterations += 1
        product = x(*xt(direction)) + alpha * direction
        curvature = (direction * product).sum(axis=0)
        step = np.divide(rr, curvature, out=np.zeros_like(rr), where=curvature > 0)
        coef_dual += direction * step
        residual -= product * step
        rr_next = (residual * residual).sum(axis=0)
        direction = residual + direction * np.divide(rr_next, rr, out=np.zeros_like(rr), where=rr > 0)
        rr = rr_next
    ws, wd = xt(coef_dual)
    coef = np.hstack([ws.T, wd.T])
    intercept = y_mean - np.concatenate([mean_s, mean_d]) @ coef.T
    return coef, intercept, iterations
