"""What every osnet-* command shares, so they behave alike (documented in docs/cli.md).

Exit status: 0 done; 1 it ran and failed (a bad or missing input file, a failed verification, a missing
package); 2 usage error (an unknown option, a value that does not parse, options that conflict: the command
line itself, told before any work); 130 interrupted. Errors are one line, `PROG: error: ...`, on stderr.
Every command has --version and help text for every option.
"""
from __future__ import annotations

import argparse
import sys

from osnet_edge._version import __version__
from osnet_edge.errors import OsnetEdgeError, UsageError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_version(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the osnet-edge version and exit")
    return parser


def report(prog: str, exc: OsnetEdgeError) -> int:
    """Print the one-line error and return the exit status its kind calls for."""
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILURE
