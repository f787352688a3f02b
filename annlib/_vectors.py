"""Row operations shared by the index types."""

from __future__ import annotations

import numpy as np


def normalize_rows(rows: np.ndarray) -> np.ndarray:
    """Unit-norm copy of each row, for cosine similarity.

    A zero row has no direction: it stays zero and scores 0 against every query.
    """
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
