"""``annlib info``: the installation (versions, SIMD path) or an index file."""

from __future__ import annotations

import platform

import click
import numpy as np

import annlib.io
from annlib.cli.app import JSON_HELP, emit_json, main, mb, version
from annlib.cli.inputs import load_index


@main.command()
@click.argument("index", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def info(index: str | None, as_json: bool) -> None:
    """Without INDEX: the annlib and numpy versions and the CPU's SIMD path.

    With INDEX: the file's format version, build parameters, sizes and partition balance
    (the file is loaded, so its checksums are verified too).

    \b
    Examples:
      annlib info --json
      annlib info minilm.annlib
    """
    if index is not None:
        _index_info(index, as_json)
        return
    from annlib import cpu_info  # lazy: needs the compiled core

    cpu = cpu_info()
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


def _index_info(path: str, as_json: bool) -> None:
    header = annlib.io.read_header(path)
    idx = load_index(path)  # verifies every section's checksum
    stats = idx.stats()
    sizes = stats["partition_size"]
    report = {
        "file": path,
        "kind": header["kind"],
        "format_version": header["format_version"],
        "written_by": header["annlib_version"],
        "file_bytes": header["file_size"],
        "config": idx.config,
        "points": stats["n"],
        "dim": stats["dim"],
        "partitions": stats["num_leaves"],
        "entries": stats["entries"],
        "spilled_points": stats["spilled_points"],
        "partition_size": sizes,
        "imbalance": sizes["max"] / sizes["mean"] if sizes["mean"] else None,
        "memory_bytes": stats["memory_bytes"],
        "total_bytes": stats["total_bytes"],
        "build_seconds": stats["build_seconds"],
    }
    if as_json:
        emit_json(report)
        return
    c = idx.config
    tree, ah, reorder = c["tree"], c["ah"], c["reorder"]
    click.echo(f"file        {path} ({mb(header['file_size'])}, format v{header['format_version']}, written by annlib {header['annlib_version']})")
    click.echo(f"kind        {header['kind']}, metric {c['metric']}, k={c['num_neighbors']}")
    click.echo(f"points      {stats['n']:,} x {stats['dim']} dims, {stats['entries']:,} entries ({stats['spilled_points']:,} spilled)")
    click.echo(
        f"tree        num_leaves={tree['num_leaves']} num_leaves_to_search={tree['num_leaves_to_search']} "
        f"soar_lambda={tree['soar_lambda']} seed={tree['seed']} training_sample_size={tree['training_sample_size']}"
    )
    click.echo(f"ah          dims_per_block={ah['dims_per_block']} anisotropic_quantization_threshold={ah['anisotropic_quantization_threshold']}")
    click.echo("reorder     " + (f"{reorder['num_neighbors']} ({reorder['quantize']})" if reorder else "off"))
    click.echo(
        f"partitions  min {sizes['min']:,} / mean {sizes['mean']:,.1f} / max {sizes['max']:,}, "
        f"{sizes['empty']} empty, max/mean {report['imbalance']:.2f}"
    )
    parts = sorted(stats["memory_bytes"].items(), key=lambda kv: -kv[1])
    click.echo(f"memory      {mb(stats['total_bytes'])}: " + ", ".join(f"{name} {mb(n)}" for name, n in parts))
    if stats["build_seconds"] is not None:
        click.echo(f"build time  {stats['build_seconds']:.2f} s")

