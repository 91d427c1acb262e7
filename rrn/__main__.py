"""`python -m rrn`: the same CLI as the `rrn` command."""

from rrn.cli import main

main()
