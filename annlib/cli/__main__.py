"""``python -m annlib.cli``: the same as the ``annlib`` command."""

from annlib.cli import main

main()
