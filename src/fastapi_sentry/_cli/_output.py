"""What every command shares: the program name, exit codes, printing, argument types.

The CLI is the only part of the library that prints. User errors are one line on stderr,
`fastapi-sentry: <what is wrong and the fix>`, never a traceback and never a DSN key.
"""

from __future__ import annotations

import argparse
import sys

PROG = "fastapi-sentry"

#: Exit codes: delivered / done, not accepted or not delivered, bad settings or arguments.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def say(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


def error(message: str, code: int = EXIT_FAILED) -> int:
    """Print one line to stderr and return `code`; newlines in the message are folded."""
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return code


def port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is not a port number (0-65535)")
    return number


def seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < number <= 600:
        raise argparse.ArgumentTypeError(f"{value!r} must be more than 0 and at most 600 seconds")
    return number
