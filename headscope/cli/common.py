"""What every `headscope` subcommand shares: one-line failures, reading a text file, the --model option.

headscope/cli/main.py and the subcommands in their own files (headscope/cli/probe.py, headscope/cli/importance.py) import
these from here, so no subcommand imports headscope/cli/main.py back.
"""

import argparse
import sys
from pathlib import Path
from typing import NoReturn


def fail(error: Exception | str) -> NoReturn:
    """What stops the command (a model that cannot be loaded, a busy port): one line on stderr, exit
    status 2, no traceback."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    print(f"headscope: error: {lines[0]}", file=sys.stderr)
    sys.exit(2)


def unreadable(path: str, e: OSError | UnicodeDecodeError) -> NoReturn:
    if isinstance(e, UnicodeDecodeError):
        fail(f"cannot read {path}: not UTF-8 text ({e.reason} at byte {e.start})")
    fail(f"cannot read {path}: {e.strerror or e}")


def read_corpus(path: str) -> list[str]:
    """The file's lines, split as `str.splitlines` does; an unreadable file ends the command."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        unreadable(path, e)


def add_model_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--model", action="append", metavar="NAME[=PATH]",
                        help=f"{help}. NAME is a built-in; NAME=PATH a local Hugging Face checkpoint directory or a "
                        "GGUF file")
    parser.add_argument("--cache-dir", metavar="DIR", help="where GGUF files' float32 weights are kept between starts "
                        "(default: $HEADSCOPE_CACHE, else ~/.cache/headscope)")


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)
