"""Build parameters as frozen, validated, JSON-serialisable dataclasses.

The builder, the plain keyword constructor, the CLI, the bench configs and the
saved file all speak these objects. Names follow ScaNN's builder
(``num_leaves``, ``num_leaves_to_search``, ``dims_per_block``,
``anisotropic_quantization_threshold``, ``reorder``) so ScaNN users feel at home.
"""

from __future__ import annotations

import dataclasses

from annlib import _validate
from annlib.errors import InvalidTypeError, InvalidValueError

SPILL_MODES = ("soar", "nearest")
REORDER_QUANTIZE = ("float32", "int8")
_MAX_SAMPLE = 2**63 - 1  # sample sizes are capped at n by the build; any int64 means "all"


def _positive(value, name: str, maximum: int = _validate.MAX_COUNT) -> None:
    _validate.positive_int(value, name, maximum)


@dataclasses.dataclass(frozen=True)
class TreeConfig:
    """k-means partitioning (algorithms.md section 3).

    ``soar_lambda`` turns on spilling: each point is also stored in a second leaf
    chosen by the SOAR loss ``||x - c'||^2 + lambda <x - c', r_hat>^2`` (``spill="soar"``)
    or by plain distance (``spill="nearest"``, for comparison). ``None`` = no spilling.
    """

    num_leaves: int
    num_leaves_to_search: int
    training_sample_size: int = 100_000
    training_iterations: int = 12
    min_partition_size: int = 1
    spherical: bool | None = None  # None: spherical k-means for dot and cosine, plain for squared_l2
    seed: int = 0
    soar_lambda: float | None = None
    spill: str = "soar"
    overretrieve_factor: float = 1.5  # spilled search: candidates kept before de-duplication, x pre_reorder

    def __post_init__(self):
        _positive(self.num_leaves, "num_leaves")
        _positive(self.num_leaves_to_search, "num_leaves_to_search")
        if self.num_leaves_to_search > self.num_leaves:
            raise InvalidValueError(
                f"num_leaves_to_search ({self.num_leaves_to_search}) cannot exceed num_leaves ({self.num_leaves})"
            )
        _positive(self.training_sample_size, "training_sample_size", _MAX_SAMPLE)
        _positive(self.training_iterations, "training_iterations")
        _positive(self.min_partition_size, "min_partition_size")
        _validate.boolean(self.spherical, "spherical", allow_none=True)
        _validate.seed(self.seed)
        if self.soar_lambda is not None:
            _validate.real(self.soar_lambda, "soar_lambda", 0.0, what="a finite number >= 0 or None")
        _validate.real(self.overretrieve_factor, "overretrieve_factor", 1.0, 4.0, what="a number")
        _validate.choice(self.spill, "spill", SPILL_MODES)


@dataclasses.dataclass(frozen=True)
class AhConfig:
    """Asymmetric hashing: 4-bit product quantization of partition residuals (algorithms.md 1.3, 2).

    ``anisotropic_quantization_threshold`` is ScaNN's T: the score-aware loss weights the
    error parallel to x by eta = (d - 1) (T^2/||x||^2) / (1 - T^2/||x||^2). ``None`` (or 0)
    gives plain reconstruction-loss PQ.
    """

    dims_per_block: int = 2
    anisotropic_quantization_threshold: float | None = 0.2
    training_sample_size: int = 100_000
    training_iterations: int = 10

    def __post_init__(self):
        _positive(self.dims_per_block, "dims_per_block")
        _positive(self.training_sample_size, "training_sample_size", _MAX_SAMPLE)
        _positive(self.training_iterations, "training_iterations")
        t = self.anisotropic_quantization_threshold
        if t is not None:
            _validate.real(t, "anisotropic_quantization_threshold", 0.0, what="a finite number >= 0 or None")

    @property
    def threshold_or_nan(self) -> float:
        t = self.anisotropic_quantization_threshold
        return float("nan") if t is None or t == 0 else float(t)


@dataclasses.dataclass(frozen=True)
class ReorderConfig:
    """Exact rescoring of the best ``num_neighbors`` AH candidates (float32, or int8 with per-dimension scales).

    ``exact_num_neighbors`` (int8 only): the index keeps the float32 rows too, and the best this
    many of the int8 rescoring are rescored again with them (a two-stage reordering). Saved and
    loaded with ``mmap=False``, the int8 rows are read into memory and the float32 rows stay
    memory-mapped from the file: only the few rows the second stage reads come from disk.
    """

    num_neighbors: int
    quantize: str = "float32"
    exact_num_neighbors: int | None = None

    def __post_init__(self):
        _positive(self.num_neighbors, "reorder num_neighbors", _validate.MAX_INT)  # clamped by the search
        _validate.choice(self.quantize, "reorder quantize", REORDER_QUANTIZE)
        if self.exact_num_neighbors is not None:
            _positive(self.exact_num_neighbors, "reorder exact_num_neighbors", _validate.MAX_INT)
            if self.quantize != "int8":
                raise InvalidValueError("reorder exact_num_neighbors needs quantize='int8' (float32 rows are exact)")

    @property
    def two_stage(self) -> bool:
        """int8 rows rescore the candidates, float32 rows the best of them."""
        return self.exact_num_neighbors is not None


@dataclasses.dataclass(frozen=True)
class TreeAhConfig:
    """Everything a tree + AH index is built with."""

    metric: str
    num_neighbors: int
    tree: TreeConfig
    ah: AhConfig
    reorder: ReorderConfig | None

    def __post_init__(self):
        # A reorder below num_neighbors is allowed: a search rescores at least k candidates.
        # Canonical metric name: files and configs always carry "dot", "cosine" or "squared_l2".
        object.__setattr__(self, "metric", _validate.metric(self.metric))
        _positive(self.num_neighbors, "num_neighbors", _validate.MAX_INT)
        for name, cls in (("tree", TreeConfig), ("ah", AhConfig)):
            if not isinstance(getattr(self, name), cls):
                raise InvalidTypeError(f"{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")
        if self.reorder is not None and not isinstance(self.reorder, ReorderConfig):
            raise InvalidTypeError(f"reorder must be a ReorderConfig or None, got {type(self.reorder).__name__}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["reorder"] is not None and d["reorder"]["exact_num_neighbors"] is None:
            # Absent unless used: files of single-stage indexes stay readable by older annlib,
            # which refuses (FormatError) a key it does not know.
            del d["reorder"]["exact_num_neighbors"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TreeAhConfig:
        """The inverse of :meth:`to_dict`; a malformed dict raises InvalidTypeError or InvalidValueError."""
        required = ("metric", "num_neighbors", "tree", "ah")
        d = _mapping(d, "config", (*required, "reorder"), required)
        reorder = d.get("reorder")
        return cls(
            metric=d["metric"],
            num_neighbors=d["num_neighbors"],
            tree=TreeConfig(**_mapping(d["tree"], "config tree", _field_names(TreeConfig))),
            ah=AhConfig(**_mapping(d["ah"], "config ah", _field_names(AhConfig))),
            reorder=None
            if reorder is None
            else ReorderConfig(**_mapping(reorder, "config reorder", _field_names(ReorderConfig))),
        )


def _field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _mapping(value, where: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    """A dict with str keys among ``allowed`` and every key in ``required`` (so ``cls(**value)`` cannot fail oddly)."""
    if not isinstance(value, dict):
        raise InvalidTypeError(f"{where} must be a dict, got {type(value).__name__}")
    unknown = [key for key in value if key not in allowed]
    if unknown:
        raise InvalidValueError(f"{where} has unknown keys {unknown!r} (allowed: {list(allowed)})")
    missing = [key for key in required if key not in value]
    if missing:
        raise InvalidValueError(f"{where} is missing keys {missing!r}")
    return value
