"""The ``annlib`` command group and what every command shares: error handling and JSON output.

Errors are turned into one line on stderr here, in one place, rather than in each command, so
a command cannot forget it: annlib's own errors, OS errors and bad values give ``Error: ...`` and
exit status 1; anything unexpected gives one line too (``ANNLIB_DEBUG=1`` shows the traceback).
A closed stdout (``annlib ... | head``) ends the command quietly with status 0.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from typing import Any

import click
import numpy as np

import annlib
from annlib.errors import AnnlibError


class AnnlibGroup(click.Group):
    """A click group that reports every failure of its commands in one line."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except BrokenPipeError:
            _quiet_stdout()
            ctx.exit(0)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if os.environ.get("ANNLIB_DEBUG"):
                raise
            raise click.ClickException(_one_line(exc)) from None


def _one_line_usage(exc: click.UsageError) -> click.UsageError:
    """Click prints a usage error as three lines (usage, hint, error); keep the error and the hint."""
    if exc.ctx is not None:
        hint = f" (see '{exc.ctx.command_path} --help')"
        if hint not in exc.message:
            exc.message = exc.message.rstrip() + hint
        exc.ctx = None
    return exc


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        detail = str(exc) or "out of memory"
        return f"not enough memory: {detail}"
    if isinstance(exc, EOFError):
        return f"unexpected end of file ({exc})" if str(exc) else "unexpected end of file"
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (AnnlibError, OSError, ValueError)):
        return message
    # Not an error annlib raises on purpose: say what it was, so a bug report has something to go on.
    return f"{type(exc).__name__}: {message} (ANNLIB_DEBUG=1 shows the traceback)"


def _quiet_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    # OSError/ValueError: stdout is not a real file (a test runner's buffer): nothing to protect.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def emit_json(payload: Any) -> None:
    """Print ``payload`` as strict JSON (RFC 8259): NaN and infinities are written as ``null``."""
    click.echo(json.dumps(jsonable(payload), indent=2, sort_keys=True, allow_nan=False))


JSON_HELP = "Print machine-readable JSON (strict: NaN and infinite numbers are written as null)."


def jsonable(value: Any) -> Any:
    """``value`` with numpy types unwrapped, tuples as lists and non-finite floats as None."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def mb(nbytes: float) -> str:
    if nbytes < 2**20:
        return f"{nbytes / 2**10:,.1f} KB"
    return f"{nbytes / 2**20:,.1f} MB"


def version() -> str:
    return str(getattr(annlib, "__version__", "unknown"))


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"annlib {version()}")
        ctx.exit()


@click.group(cls=AnnlibGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the annlib version and exit.",
)
def main() -> None:
    """annlib: approximate nearest neighbor search with a C++/SIMD core.

    Every command has --help with an example; commands that print data take --json (strict
    JSON: NaN and infinite numbers become null). Errors are one line on stderr, exit status 1
    (2 for a bad command line).

    \b
    Examples:
      annlib info
      annlib datasets list
      annlib build datasets/debian-minilm-10k.hdf5 --out minilm.annl
      annlib search minilm.annl datasets/debian-minilm-10k.hdf5 -k 10
      annlib info minilm.annl
      annlib bench --mode batch
    """
