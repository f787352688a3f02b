"""``annlib info``: the installation (versions, SIMD path) or an index file of any kind."""

from __future__ import annotations

import platform
from typing import Any

import click
import numpy as np

import annlib
from annlib.cli.app import JSON_HELP, emit_json, main, mb, version
from annlib.cli.inputs import load_index, read_header, search_defaults


@main.command()
@click.argument("index", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def info(index: str | None, as_json: bool) -> None:
    """Without INDEX: the annlib and numpy versions and the CPU's SIMD path.

    With INDEX (a file of any index kind): its format version, kind, configuration, sizes and,
    for a partitioned index, its partition balance (the file is loaded, so its checksums are
    verified too).

    \b
    Examples:
      annlib info --json
      annlib info minilm.annl
    """
    if index is not None:
        _index_info(index, as_json)
        return
    cpu = annlib.cpu_info()
    report = {
        "annlib": version(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
    }
    if as_json:
        emit_json(report)
        return
    click.echo(f"annlib    {report['annlib']}")
    click.echo(f"numpy     {report['numpy']}")
    click.echo(f"python    {report['python']} ({report['platform']})")
    click.echo(f"simd      {cpu.get('isa', '?')} (available: {', '.join(cpu.get('available', []))})")
    features = cpu.get("features", {})
    if features:
        click.echo("features  " + " ".join(f"{name}{'+' if on else '-'}" for name, on in sorted(features.items())))
    if "threads" in cpu:
        click.echo(f"threads   {cpu['threads']}")


# What stats() reports beyond the protocol's n/dim/memory, copied to the top level of the JSON
# report under these names (a tree-AH index has them; other kinds may not).
_PARTITION_STATS = {"num_leaves": "partitions", "entries": "entries", "spilled_points": "spilled_points"}


_SHOWN_STATS = {"n", "dim", "memory_bytes", "total_bytes", "build_seconds", "partition_size", *_PARTITION_STATS}


def _index_report(path: str) -> dict[str, Any]:
    header = read_header(path)  # a malformed header is reported before anything is loaded
    idx = load_index(path)  # verifies every section's checksum
    stats = idx.stats()
    config = idx.config
    report: dict[str, Any] = {
        "file": path,
        "kind": idx.kind,
        "format_version": header["format_version"],
        "written_by": header["annlib_version"],
        "file_bytes": header["file_size"],
        "metric": idx.metric,
        "num_neighbors": idx.num_neighbors,
        "search_defaults": search_defaults(idx),
        "points": stats["n"],
        "dim": stats["dim"],
        "config": config,
        "memory_bytes": stats["memory_bytes"],
        "total_bytes": stats["total_bytes"],
        "build_seconds": stats.get("build_seconds"),
    }
    for key, name in _PARTITION_STATS.items():
        if key in stats:
            report[name] = stats[key]
    # Whatever else the kind reports about itself (e.g. the JAX kind's device).
    report["other_stats"] = {key: value for key, value in stats.items() if key not in _SHOWN_STATS}
    sizes = stats.get("partition_size")
    if sizes is not None:
        report["partition_size"] = sizes
        report["imbalance"] = sizes["max"] / sizes["mean"] if sizes["mean"] else None
    return report


def _settings(values: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in values.items())


def _index_info(path: str, as_json: bool) -> None:
    report = _index_report(path)
    if as_json:
        emit_json(report)
        return
    click.echo(
        f"file        {path} ({mb(report['file_bytes'])}, format v{report['format_version']}, "
        f"written by annlib {report['written_by']})"
    )
    click.echo(f"kind        {report['kind']}, metric {report['metric']}, k={report['num_neighbors']}")
    points = f"points      {report['points']:,} x {report['dim']} dims"
    if "entries" in report:
        points += f", {report['entries']:,} entries ({report.get('spilled_points', 0):,} spilled)"
    click.echo(points)
    # The configuration as the index reports it: one line per section, the loose settings on one.
    loose = {key: value for key, value in report["config"].items() if not isinstance(value, dict)}
    loose = {key: value for key, value in loose.items() if key not in ("metric", "num_neighbors")}
    for key, value in report["config"].items():
        if isinstance(value, dict):
            click.echo(f"{key:<11} {_settings(value)}")
        elif value is None and key not in ("metric", "num_neighbors"):
            click.echo(f"{key:<11} off")
            loose.pop(key)
    if loose:
        click.echo(f"settings    {_settings(loose)}")
    click.echo(f"search      {_settings(report['search_defaults']) or '(no parameters)'}")
    if report["other_stats"]:
        click.echo(f"stats       {_settings(report['other_stats'])}")
    sizes = report.get("partition_size")
    if sizes is not None:
        imbalance = f"{report['imbalance']:.2f}" if report["imbalance"] is not None else "-"
        click.echo(
            f"partitions  {report.get('partitions', '?')}: min {sizes['min']:,} / mean {sizes['mean']:,.1f} / "
            f"max {sizes['max']:,}, {sizes['empty']} empty, max/mean {imbalance}"
        )
    parts = sorted(report["memory_bytes"].items(), key=lambda kv: -kv[1])
    click.echo(f"memory      {mb(report['total_bytes'])}: " + ", ".join(f"{name} {mb(n)}" for name, n in parts))
    if report["build_seconds"] is not None:
        click.echo(f"build time  {report['build_seconds']:.2f} s")
