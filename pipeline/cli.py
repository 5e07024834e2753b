"""Command line: ``python -m pipeline <command> [flags]`` (also installed as ``altcorpus``).

Each command is a function ``(argv) -> exit code | None`` imported only when called, so ``--help`` is fast and
a command's heavy dependencies load only for it.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

from pipeline.core.registry import STAGE_SPECS

#: command -> (module:function, one-line help); the stages come from the registry, in data-path order.
COMMANDS: dict[str, tuple[str, str]] = {
    "make-sample": ("pipeline.sample.builder:main", "Generate the bundled sample web archive (and its eval set)"),
    **{spec.name: (spec.entry_point, spec.summary) for spec in STAGE_SPECS},
    "build-corpus": ("pipeline.build:run", "Run every stage in order, then print the funnel"),
    "stats": ("pipeline.corpus.stats:main", "DuckDB statistics of a corpus: funnel with balance check, distributions"),
    "eval-index": ("pipeline.images.eval_index:main", "Perceptual-hash index of evaluation images for decontamination"),
    "reshard": ("pipeline.corpus.reshard:main", "Rewrite a corpus with a new shard size or a DuckDB WHERE subset"),
}


#: Commands that are Beam jobs: their flags are the corpus options plus Beam's own.
BEAM_COMMANDS = {*(spec.name for spec in STAGE_SPECS), "build-corpus"}


def beam_command_help(command: str) -> str:
    """``--help`` of a Beam stage: Beam's option parser ignores ``--help``, so the corpus options are listed here."""
    import argparse
    import inspect

    from pipeline.core.config import CorpusOptions, TextFilterConfig

    description = COMMANDS[command][1]
    if command in ("filter-text", "build-corpus"):
        description += "\n\n" + (inspect.getdoc(TextFilterConfig) or "")
    parser = argparse.ArgumentParser(
        prog=f"python -m pipeline {command}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Any Beam pipeline option also applies (--runner, --direct_num_workers, --project, ...).",
    )
    CorpusOptions._add_argparse_args(parser)
    return parser.format_help()


def usage() -> str:
    """The command list shown by ``--help`` and on a wrong command."""
    lines = ["usage: python -m pipeline <command> [flags]", "", "commands:"]
    lines += [f"  {name:<14} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run `python -m pipeline <command> --help` for a command's flags."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a command; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    if command in BEAM_COMMANDS and ("-h" in rest or "--help" in rest):
        print(beam_command_help(command))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Beam logs every type-hint conversion and sink rename at INFO: keep its warnings, and our progress lines.
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    module_name, function_name = COMMANDS[command][0].split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    code = function(rest)
    return int(code) if isinstance(code, int) else 0
