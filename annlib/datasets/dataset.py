"""The in-memory dataset type and the ann-benchmarks distance names it maps to annlib metrics.

The ann-benchmarks distance names map to annlib metrics as ``angular -> "cosine"``,
``euclidean -> "squared_l2"`` and ``dot -> "dot"``. Stored distances keep the ann-benchmarks
convention of the file: ``1 - cos`` for angular, the (not squared) L2 distance for euclidean and
the inner product (a similarity, larger is better) for dot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["DISTANCE_TO_METRIC", "METRIC_TO_DISTANCE", "Dataset", "metric_for"]

#: ann-benchmarks ``distance`` attribute -> annlib metric.
DISTANCE_TO_METRIC = {"angular": "cosine", "euclidean": "squared_l2", "dot": "dot"}
#: annlib metric -> ann-benchmarks ``distance`` attribute.
METRIC_TO_DISTANCE = {metric: distance for distance, metric in DISTANCE_TO_METRIC.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A benchmark dataset held in memory.

    Parameters
    ----------
    name : str
        Registry name or file stem.
    train : numpy.ndarray
        float32 ``[n, dim]`` database points (float16 storage is widened on read).
    test : numpy.ndarray or None
        float32 ``[nq, dim]`` queries; None for train-only files (``.npy``, ``.fvecs``).
    neighbors : numpy.ndarray or None
        int32 ``[nq, k_gt]`` exact neighbor ids, nearest first.
    distances : numpy.ndarray or None
        float32 ``[nq, k_gt]`` their distances in the file's ``distance`` convention.
    distance : str or None
        The file's ann-benchmarks ``distance`` attribute ("angular", "euclidean", "dot", ...).
    metric : str or None
        The annlib metric for ``distance``; None when annlib has no equivalent (e.g. "jaccard").
    attrs : Mapping
        All HDF5 attributes of the file, as plain Python values.
    """

    name: str
    train: np.ndarray
    test: np.ndarray | None = None
    neighbors: np.ndarray | None = None
    distances: np.ndarray | None = None
    distance: str | None = None
    metric: str | None = None
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Number of dimensions of ``train``."""
        return int(self.train.shape[1])


def metric_for(distance: str | None) -> str | None:
    """The annlib metric of an ann-benchmarks ``distance`` name, or None when annlib has none."""
    return DISTANCE_TO_METRIC.get(distance.lower()) if distance else None
