"""Command line: ``altcorpus <command> [flags]`` (or ``python -m pipeline <command> [flags]``).

Each command is a function ``(argv) -> exit code | None`` imported only when called, so ``--help`` is fast and
a command's heavy dependencies load only for it.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence

from pipeline.core.registry import ALL_STAGE_SPECS, stage_spec

#: command -> (module:function, one-line help); the stages come from the registry, in data-path order.
COMMANDS: dict[str, tuple[str, str]] = {
    "make-sample": ("pipeline.sample.builder:main", "Generate the bundled sample web archive (and its eval set)"),
    **{spec.name: (spec.entry_point, spec.summary) for spec in ALL_STAGE_SPECS},
    "build-corpus": ("pipeline.build:run", "Run every stage in order, then print the funnel"),
    "stats": ("pipeline.corpus.stats:main", "DuckDB statistics of a corpus: funnel with balance check, distributions"),
    "eval-index": ("pipeline.images.eval_index:main", "Perceptual-hash index of evaluation images for decontamination"),
    "reshard": ("pipeline.corpus.reshard:main", "Rewrite a corpus with a new shard size or a DuckDB WHERE subset"),
}


#: Commands that are Beam jobs: their flags are the corpus options plus Beam's own.
BEAM_COMMANDS = {*(spec.name for spec in ALL_STAGE_SPECS), "build-corpus"}


def stage_options(command: str) -> dict[str, tuple[str, ...] | None]:
    """The config fields a stage applies, by section (None: the whole section), from the registry; build-corpus: all."""
    if command not in BEAM_COMMANDS or command == "build-corpus":
        from pipeline.core.config import SECTIONS

        return dict.fromkeys(SECTIONS)
    options: dict[str, tuple[str, ...] | None] = {}
    for entry in stage_spec(command).config_sections:
        section, _, field_name = entry.partition(".")
        if not field_name:
            options[section] = None
        elif options.get(section, ()) is not None:
            options[section] = (*(options.get(section) or ()), field_name)
    return options


#: A config section's heading in ``--help``: the stage that applies it.
SECTION_TITLES = {
    "extract": "extract",
    "text": "filter-text",
    "fetch": "fetch",
    "image": "filter-image",
    "shards": "write-shards",
    "crawl": "crawl input (extract --crawl)",
    "caption": "caption (optional)",
}

_HELP_WIDTH, _HELP_INDENT = 100, 26


def _help_rows(flags: str, text: str) -> list[str]:
    """One option of ``--help``: the flags, then the text wrapped beside them (below them when the flags are long)."""
    import textwrap

    indent = " " * _HELP_INDENT
    wrapped = textwrap.wrap(text, _HELP_WIDTH - _HELP_INDENT) or [""]
    head = f"  {flags}"
    if len(head) < _HELP_INDENT - 1:
        rows = [head.ljust(_HELP_INDENT) + wrapped[0]]
        wrapped = wrapped[1:]
    else:
        rows = [head]
    return rows + [indent + line for line in wrapped]


def _metavar(hint: object) -> str:
    import typing

    names = {int: "N", float: "X", str: "TEXT"}
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
    if typing.get_origin(args[0]) is tuple:
        return "A,B,..."
    return names.get(args[0], "VALUE")  # type: ignore[call-overload]


def beam_command_help(command: str) -> str:
    """``--help`` of a Beam stage, built from the config fields (Beam's option parser ignores ``--help``): the
    stage's own options first, grouped by the stage that applies them, with allowed values and defaults."""
    import dataclasses
    import inspect
    import typing

    from pipeline.core.config import PRESETS, SECTIONS, TextFilterConfig, allowed_values, field_help, plain_help

    needs_input = command in ("extract", "build-corpus")
    lines = [
        f"usage: altcorpus {command} {'(--input PATTERN | --crawl ID) ' if needs_input else ''}--output DIR [options] "
        "[Beam options]",
        "",
        plain_help(COMMANDS[command][1]),
    ]
    if command in ("filter-text", "build-corpus"):
        lines += ["", plain_help(inspect.getdoc(TextFilterConfig) or "")]
    lines += ["", "corpus options:"]
    if needs_input:
        lines += _help_rows(
            "--input PATTERN",
            "(required) WARC/WAT files: a path or glob (local, gs://, s3://); several separated by commas. Or, "
            "instead, --crawl CC-MAIN-YYYY-WW: a Common Crawl crawl (see the crawl input options).",
        )
    lines += _help_rows("--output DIR", "(required) The corpus folder every stage reads and writes under.")
    lines += _help_rows(
        "--preset NAME",
        f"Named starting configuration, one of: {', '.join(PRESETS)} (default: align); the flags below override it.",
    )
    lines += _help_rows("--force", "Re-run stages already marked done by _SUCCESS (build-corpus skips them otherwise).")
    lines += _help_rows("--debug", "Show the traceback of an error instead of one line.")
    defaults = PRESETS["align"]
    for section_name, names in stage_options(command).items():
        section = SECTIONS[section_name]
        hints = typing.get_type_hints(section)
        used = "" if names is None else f" ({command} uses these too)"
        lines += ["", f"{SECTION_TITLES[section_name]} options{used}:"]
        for item in dataclasses.fields(section):
            if names is not None and item.name not in names:
                continue
            flag = "--" + item.name.replace("_", "-")
            hint = hints[item.name]
            flags = f"{flag} / --no-{flag[2:]}" if hint is bool else f"{flag} {_metavar(hint)}"
            notes = [allowed_values(item)] if allowed_values(item) else []
            notes.append(f"default: {getattr(getattr(defaults, section_name), item.name)!r}")
            if type(None) in typing.get_args(hint):
                notes.append("none switches the rule off")
            lines += _help_rows(flags, f"{plain_help(field_help(item))} [{'; '.join(notes)}]")
    lines += [
        "",
        "Every Beam pipeline option also applies (--runner, --direct_num_workers, --project, --temp_location, ...).",
    ]
    return "\n".join(lines)


def usage() -> str:
    """The command list shown by ``--help`` and on a wrong command."""
    lines = ["usage: altcorpus <command> [flags]   (or python -m pipeline <command> [flags])", "", "commands:"]
    lines += [f"  {name:<14} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run `altcorpus <command> --help` for a command's flags; --debug shows an error's traceback."]
    return "\n".join(lines)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("altcorpus")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def user_error(error: BaseException) -> tuple[BaseException, int] | None:
    """The error to report as one line and its exit status, or None for a bug (its traceback is kept).

    Status 2: a usage mistake (bad flag or value, missing input; argparse's status); 1: the run could not go on (an
    unreadable input, an unwritable output). Beam re-raises a worker's error as a RuntimeError naming the step, so
    an ``OSError`` or project error behind it (``output under a file``) is what gets reported.
    """
    from pipeline.core.errors import AltcorpusError

    if isinstance(error, SystemExit):
        return (error, 2) if isinstance(error.code, str) else None
    if isinstance(error, ValueError) and not isinstance(error, AltcorpusError):
        return error, 2
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, AltcorpusError):
            return cause, cause.exit_status
        if isinstance(cause, OSError):
            return cause, 1
        cause = cause.__cause__ or cause.__context__
    return None


def error_line(error: BaseException) -> str:
    """An error as one line: its message's first line (Beam appends the failing step's name on later lines)."""
    text = str(error.code if isinstance(error, SystemExit) else error).strip()
    line = (text.splitlines() or [type(error).__name__])[0]
    return re.sub(r"\s*\[while running '[^']*'\]$", "", line)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a command; returns the process exit code. An error the user can act on is one line on stderr
    (``altcorpus <command>: error: ...``); ``--debug`` raises it with its traceback instead."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [arg for arg in args if arg != "--debug"]
    try:
        code = _dispatch(args, debug)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader went away (`altcorpus --help | head`): stop quietly, like other command-line tools. Python
        # would flush stdout again at exit and fail the same way, so stdout now points at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


@contextlib.contextmanager
def _imports_frozen(module_name: str) -> Iterator[None]:
    """Import a command's modules (Beam's are 200,000 objects) with the cyclic garbage collector off, then freeze
    them out of its reach: each collection walked them all, 1.2 to 1.6 CPU s of every stage run (bench/extract.py).
    Only on a command's first import in a process, so a test calling ``main`` again freezes nothing more."""
    if module_name in sys.modules or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _dispatch(args: list[str], debug: bool) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"altcorpus {_version()}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"altcorpus: error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    if command in BEAM_COMMANDS and ("-h" in rest or "--help" in rest):
        print(beam_command_help(command))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Beam logs every type-hint conversion and sink rename at INFO: keep its warnings, and our progress lines.
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    # ... but local worker processes' progress lines reach us through a Beam logger: let ours through.
    from pipeline.core.local_runner import show_worker_lines

    show_worker_lines(os.path.dirname(os.path.abspath(__file__)) + os.sep)
    if not debug:
        # A worker's error is logged with its traceback by Beam and then raised here, where it becomes one line.
        logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    module_name, function_name = COMMANDS[command][0].split(":")
    try:
        with _imports_frozen(module_name):
            if command in BEAM_COMMANDS:
                from pipeline.core.config import check_flags

                check_flags(rest)  # before Beam parses them: it would drop a misspelled flag with a warning
            function = getattr(importlib.import_module(module_name), function_name)
        code = function(rest)
    except (Exception, SystemExit) as error:
        reported = None if debug else user_error(error)
        if reported is None:
            raise
        print(f"altcorpus {command}: error: {error_line(reported[0])}", file=sys.stderr)
        return reported[1]
    return int(code) if isinstance(code, int) else 0
