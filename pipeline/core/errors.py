"""The project's error types: what the command line reports as one line (``altcorpus <command>: error: ...``).

``UsageError`` is a mistake in the flags or settings (exit status 2, like argparse); it subclasses ``ValueError`` so
callers that already catch that keep working. ``InputError`` is a run that cannot go on with what it was given
(exit status 1). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class AltcorpusError(Exception):
    """Base of the errors the command line prints as one line; ``exit_status`` is the process exit code."""

    exit_status = 1


class UsageError(AltcorpusError, ValueError):
    """A bad flag, value or setting, found before anything is read or written."""

    exit_status = 2


class InputError(AltcorpusError):
    """The inputs cannot be used (e.g. no input file is a readable WARC); nothing was replaced."""
