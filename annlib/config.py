"""Build parameters as frozen, validated, JSON-serialisable dataclasses.

The builder, the plain keyword constructor, the CLI, the bench configs and the
saved file all speak these objects. Names follow ScaNN's builder
(``num_leaves``, ``num_leaves_to_search``, ``dims_per_block``,
``anisotropic_quantization_threshold``, ``reorder``) so ScaNN users feel at home.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

SPILL_MODES = ("soar", "nearest")
REORDER_QUANTIZE = ("float32", "int8")


def _positive(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _non_negative(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


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
            raise ValueError(
                f"num_leaves_to_search ({self.num_leaves_to_search}) cannot exceed num_leaves ({self.num_leaves})"
            )
        _positive(self.training_sample_size, "training_sample_size")
        _positive(self.training_iterations, "training_iterations")
        _positive(self.min_partition_size, "min_partition_size")
        _non_negative(self.seed, "seed")
        if self.soar_lambda is not None:
            lam = float(self.soar_lambda)
            if not math.isfinite(lam) or lam < 0:
                raise ValueError(f"soar_lambda must be a finite number >= 0 or None, got {self.soar_lambda!r}")
        f = self.overretrieve_factor
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 1.0 <= f <= 4.0:
            raise ValueError(f"overretrieve_factor must be a number in [1, 4], got {f!r}")
        if self.spill not in SPILL_MODES:
            raise ValueError(f"spill must be one of {SPILL_MODES}, got {self.spill!r}")


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
        _positive(self.training_sample_size, "training_sample_size")
        _positive(self.training_iterations, "training_iterations")
        t = self.anisotropic_quantization_threshold
        if t is not None and (not isinstance(t, numbers.Real) or not math.isfinite(t) or t < 0):
            raise ValueError(f"anisotropic_quantization_threshold must be a finite number >= 0 or None, got {t!r}")

    @property
    def threshold_or_nan(self) -> float:
        t = self.anisotropic_quantization_threshold
        return float("nan") if t is None or t == 0 else float(t)


@dataclasses.dataclass(frozen=True)
class ReorderConfig:
    """Exact rescoring of the best ``num_neighbors`` AH candidates (float32, or int8 with per-dimension scales)."""

    num_neighbors: int
    quantize: str = "float32"

    def __post_init__(self):
        _positive(self.num_neighbors, "reorder num_neighbors")
        if self.quantize not in REORDER_QUANTIZE:
            raise ValueError(f"reorder quantize must be one of {REORDER_QUANTIZE}, got {self.quantize!r}")


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
        _positive(self.num_neighbors, "num_neighbors")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TreeAhConfig:
        reorder = d.get("reorder")
        return cls(
            metric=d["metric"],
            num_neighbors=d["num_neighbors"],
            tree=TreeConfig(**d["tree"]),
            ah=AhConfig(**d["ah"]),
            reorder=ReorderConfig(**reorder) if reorder is not None else None,
        )
