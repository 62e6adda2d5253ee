"""`python -m app` is the same as the `headscope` command."""

from app.cli import main

main()
