"""Benchmark datasets: reading, writing, fetching and ground truth for the files ANN benchmarks use.

One module per job:

* :mod:`.dataset` - the in-memory :class:`Dataset` and the ann-benchmarks distance names;
* :mod:`.formats` - the ann-benchmarks HDF5 layout, TEXMEX ``.fvecs``/``.ivecs``/``.bvecs``
  and ``.npy``, read and written;
* :mod:`.registry` - the named datasets, the directories searched for them, and
  :func:`load_dataset` (also :func:`load`) by name or path;
* :mod:`.fetch` - :func:`download` from ann-benchmarks.com;
* :mod:`.truth` - exact :func:`ground_truth`.

Files follow the ann-benchmarks layout (``train``, ``test``, ``neighbors``, ``distances`` and the
attribute ``distance``); the ann-benchmarks distance names map to annlib metrics as
``angular -> "cosine"``, ``euclidean -> "squared_l2"`` and ``dot -> "dot"``. Stored distances keep the
ann-benchmarks convention of the file: ``1 - cos`` for angular, the (not squared) L2 distance for
euclidean and the inner product (a similarity, larger is better) for dot.

Every writer and every download is atomic (:mod:`annlib._atomic`): the data go to a temporary
file in the target directory, fsynced and ``os.replace``-d into place, so a crash or an
interrupted download never leaves a partial file under the final name.

Examples
--------
>>> import annlib.datasets as ds
>>> sample = ds.load_dataset("debian-minilm-10k")    # doctest: +SKIP
>>> sample.train.shape, sample.metric                 # doctest: +SKIP
((10000, 384), 'cosine')
"""

from __future__ import annotations

from annlib.datasets import dataset as _dataset
from annlib.datasets import fetch as _fetch
from annlib.datasets import formats as _formats
from annlib.datasets import registry as _registry
from annlib.datasets import truth as _truth
from annlib.datasets.dataset import DISTANCE_TO_METRIC, METRIC_TO_DISTANCE, Dataset, metric_for
from annlib.datasets.fetch import download
from annlib.datasets.formats import (
    open_npy,
    read_bvecs,
    read_fvecs,
    read_hdf5,
    read_ivecs,
    read_npy,
    write_bvecs,
    write_fvecs,
    write_hdf5,
    write_ivecs,
    write_npy,
)
from annlib.datasets.registry import REGISTRY, RegistryEntry, data_dirs, list_datasets, load, load_dataset
from annlib.datasets.truth import ground_truth

# Each module's __all__ is its public part; the package offers all of them.
__all__ = sorted({*_dataset.__all__, *_fetch.__all__, *_formats.__all__, *_registry.__all__, *_truth.__all__})
