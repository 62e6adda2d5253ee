"""`python -m headscope` is the same as the `headscope` command."""

from headscope.cli.main import main

main()
