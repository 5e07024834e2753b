"""How altcorpus's own flags may be spelled on a command line.

Every config field has a hyphenated flag (``--eval-index``). Tools that build Beam command lines from a dict write
option names with underscores instead: the Airflow Beam provider turns ``{"eval_index": ...}`` into
``--eval_index=...``, the way Beam's own options are spelled (``--temp_location``). So each field also answers to its
underscore spelling, registered on the same argparse action: every parser Beam builds from ``CorpusOptions`` (the
stage's, ``view_as``'s, ``get_all_options``'s) then reads it, with no rewriting of argv anywhere.

List-valued fields (``languages``, ``allowed_addresses``) take one comma-separated value (``--languages=en,de``); a
repeated flag is not a list (argparse keeps the last), which is why the DAG joins list values with commas.
"""

from __future__ import annotations

#: Underscore spellings Beam itself already uses for one of its own options: ``--user_agent`` is Beam's (the agent
#: Dataflow's client reports), so altcorpus's fetch User-Agent is ``--user-agent`` only.
#: tests/pipeline/core/test_argv.py checks this against Beam's registered flags.
BEAM_OWNS: frozenset[str] = frozenset({"user_agent"})


def flag_names(name: str) -> tuple[str, ...]:
    """The flags that set config field ``name``: ``--eval-index``, plus ``--eval_index`` unless Beam owns that one."""
    hyphenated = "--" + name.replace("_", "-")
    if "_" not in name or name in BEAM_OWNS:
        return (hyphenated,)
    return hyphenated, "--" + name
