"""The named datasets: the registry, the directories searched for them, and loading by name or path.

Registry datasets are looked up as ``<name>.hdf5`` in :func:`data_dirs` and never downloaded
implicitly (:func:`annlib.datasets.download` does that).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import numpy as np

from annlib.datasets.dataset import DISTANCE_TO_METRIC, Dataset
from annlib.datasets.formats import read_bvecs, read_fvecs, read_hdf5, read_npy
from annlib.errors import DatasetError

__all__ = ["REGISTRY", "RegistryEntry", "data_dirs", "list_datasets", "load", "load_dataset"]

BASE_URL = "https://ann-benchmarks.com"


@dataclasses.dataclass(frozen=True)
class RegistryEntry:
    """One known dataset: where it comes from and what it must look like.

    Parameters
    ----------
    name : str
        ann-benchmarks name, ``<name>-<dim>-<distance>``.
    url : str or None
        Download address; None for local-only datasets.
    dim : int
        Number of dimensions stored in the file.
    distance : str
        ann-benchmarks ``distance`` attribute of the file.
    n_train : int
        Number of ``train`` points.
    n_test : int
        Number of ``test`` queries.
    """

    name: str
    url: str | None
    dim: int
    distance: str
    n_train: int
    n_test: int

    @property
    def metric(self) -> str:
        """The annlib metric for this dataset."""
        return DISTANCE_TO_METRIC[self.distance]


def _remote(name: str, dim: int, distance: str, n_train: int, n_test: int) -> RegistryEntry:
    return RegistryEntry(name, f"{BASE_URL}/{name}.hdf5", dim, distance, n_train, n_test)


#: Known datasets. ``lastfm-64-dot`` is stored by ann-benchmarks as 65-d "angular" vectors (the
#: inner-product problem reduced to cosine by one extra coordinate), so that is what it must hold.
REGISTRY: dict[str, RegistryEntry] = {
    entry.name: entry
    for entry in (
        _remote("glove-25-angular", 25, "angular", 1_183_514, 10_000),
        _remote("glove-50-angular", 50, "angular", 1_183_514, 10_000),
        _remote("glove-100-angular", 100, "angular", 1_183_514, 10_000),
        _remote("glove-200-angular", 200, "angular", 1_183_514, 10_000),
        _remote("sift-128-euclidean", 128, "euclidean", 1_000_000, 10_000),
        _remote("fashion-mnist-784-euclidean", 784, "euclidean", 60_000, 10_000),
        _remote("mnist-784-euclidean", 784, "euclidean", 60_000, 10_000),
        _remote("nytimes-256-angular", 256, "angular", 290_000, 10_000),
        _remote("gist-960-euclidean", 960, "euclidean", 1_000_000, 1_000),
        _remote("deep-image-96-angular", 96, "angular", 9_990_000, 10_000),
        _remote("lastfm-64-dot", 65, "angular", 292_385, 50_000),
        _remote("coco-i2i-512-angular", 512, "angular", 113_287, 10_000),
        _remote("coco-t2i-512-angular", 512, "angular", 113_287, 10_000),
        # Local only: the committed sample (datasets/make_sample.py) and the shared real dataset.
        RegistryEntry("debian-minilm-10k", None, 384, "angular", 10_000, 200),
        RegistryEntry("debian-minilm-384-angular", None, 384, "angular", 50_000, 1_000),
    )
}


def _repo_datasets_dir() -> pathlib.Path:
    # <repo>/datasets, beside the annlib package directory (a source checkout or an editable install).
    return pathlib.Path(__file__).resolve().parents[2] / "datasets"


def _cache_dir() -> pathlib.Path:
    return pathlib.Path.home() / ".cache" / "annlib"


def data_dirs() -> list[pathlib.Path]:
    """Directories searched for registry datasets, in order.

    ``$ANNLIB_DATA_DIR`` (when set), the repository's ``datasets/`` folder, the sample installed
    with the package (``annlib/data``), then ``~/.cache/annlib``.
    """
    dirs = []
    env = os.environ.get("ANNLIB_DATA_DIR")
    if env:
        dirs.append(pathlib.Path(env).expanduser())
    dirs += [_repo_datasets_dir(), pathlib.Path(__file__).resolve().parents[1] / "data", _cache_dir()]
    return dirs


def default_download_dir() -> pathlib.Path:
    """Where :func:`annlib.datasets.download` writes by default: ``$ANNLIB_DATA_DIR`` or ``~/.cache/annlib``."""
    env = os.environ.get("ANNLIB_DATA_DIR")
    return pathlib.Path(env).expanduser() if env else _cache_dir()


def find_local(name: str) -> pathlib.Path | None:
    """The first ``<name>.hdf5`` in :func:`data_dirs`, or None."""
    for directory in data_dirs():
        candidate = directory / f"{name}.hdf5"
        if candidate.is_file():
            return candidate
    return None


def registry_entry(name: str) -> RegistryEntry:
    """The :data:`REGISTRY` entry of ``name``; DatasetError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}") from None


def load(name_or_path: str | os.PathLike) -> Dataset:
    """Load a dataset by registry name or by path.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        A :data:`REGISTRY` name (looked up as ``<name>.hdf5`` in :func:`data_dirs`; never
        downloaded implicitly), or a path to ``.hdf5``/``.h5`` (full dataset), ``.npy``,
        ``.fvecs`` or ``.bvecs`` (train only).

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        Unknown name (the message lists the known names), a registry dataset not present locally,
        a missing file, or an unsupported extension.
    FormatError
        The file is corrupt or not in the format its extension says.

    Examples
    --------
    >>> ds = load("debian-minilm-10k")   # doctest: +SKIP
    >>> ds.train.shape                    # doctest: +SKIP
    (10000, 384)
    """
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, str) and text in REGISTRY:
        found = find_local(text)
        if found is None:
            searched = ", ".join(str(d) for d in data_dirs())
            hint = f"; run `annlib datasets download {text}`" if REGISTRY[text].url else ""
            raise DatasetError(f"dataset {text!r} is not present locally (searched {searched}){hint}")
        return read_hdf5(found, name=text)
    path = pathlib.Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".hdf5", ".h5", ".npy", ".fvecs", ".bvecs"):
        if not path.exists():
            raise DatasetError(
                f"{text!r} is neither a known dataset nor an existing file; "
                f"known datasets: {', '.join(sorted(REGISTRY))}"
            )
        raise DatasetError(f"{path}: unsupported file type {suffix!r}; expected .hdf5, .h5, .npy, .fvecs or .bvecs")
    if suffix in (".hdf5", ".h5"):
        return read_hdf5(path)
    if suffix == ".npy":
        train = read_npy(path)
    else:
        reader = read_fvecs if suffix == ".fvecs" else read_bvecs
        train = np.ascontiguousarray(reader(path), dtype=np.float32)
    return Dataset(name=path.stem, train=train)


def list_datasets() -> list[dict[str, Any]]:
    """Describe every registry dataset and where it is available locally.

    Returns
    -------
    list of dict
        One dict per dataset with ``name``, ``url``, ``dim``, ``distance``, ``metric``,
        ``n_train``, ``n_test`` and ``path`` (str of the local file, or None).
    """
    rows = []
    for entry in REGISTRY.values():
        row = dataclasses.asdict(entry)
        row["metric"] = entry.metric
        local = find_local(entry.name)
        row["path"] = str(local) if local is not None else None
        rows.append(row)
    return rows


#: The name ``annlib.load_dataset`` exports: it says what is loaded (indexes load with ``annlib.load_index``).
load_dataset = load
