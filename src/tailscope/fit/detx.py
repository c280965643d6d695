"""The TRACE-LOG (detX) condition of SETOL, located as weightwatcher 0.7.7 locates it.

The eigenvalues are first rescaled so that their mean is 1 (lambda * M / sum(lambda)). Going
down from the largest, the tail grows one eigenvalue at a time; the tail stops at the first
eigenvalue whose inclusion makes the product of the tail's eigenvalues (exp of its trace-log)
drop below 1. `detx_num` is the size of that tail (including the eigenvalue that crossed) and
`detx_index` the ascending index of its smallest eigenvalue. When no tail's product drops below
1 the whole spectrum is the tail (index 0); weightwatcher then reports index 1 with the full count,
an off-by-one of its loop that we do not copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DetX:
    num: int  # eigenvalues in the detX tail
    index: int  # ascending index of the tail's smallest eigenvalue
    value: float  # that eigenvalue, in the original (unrescaled) units
    value_rescaled: float  # the same in mean-1 units


def rescale_to_unit_mean(evals: np.ndarray) -> tuple[np.ndarray, float]:
    """Eigenvalues scaled so their mean is 1, and the factor used."""
    scale = evals.size / float(np.sum(evals))
    return evals * scale, scale


def detx(evals: np.ndarray) -> DetX:
    """Locate the detX tail of an ascending eigenvalue array (weightwatcher's detX_constraint).

    >>> d = detx(np.array([0.1, 0.2, 0.5, 1.0, 2.0, 4.0]))
    >>> d.num, d.index
    (5, 1)
    """
    evals = np.asarray(evals, dtype=np.float64)
    if evals.size < 2 or not evals[0] < evals[-1]:
        return DetX(0, 0, float("nan"), float("nan"))
    scaled, scale = rescale_to_unit_mean(evals)
    # suffix sums of log: log prod(scaled[i:]) for every i, largest first
    log_tail = np.cumsum(np.log(scaled[::-1]))[::-1]
    below = np.nonzero(log_tail[1:] < 0.0)[0]
    index = int(below[-1]) + 1 if below.size else 0
    num = evals.size - index if below.size else evals.size
    return DetX(num=num, index=index, value=float(evals[index]), value_rescaled=float(scaled[index]))
