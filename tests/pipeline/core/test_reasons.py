"""The reason enums against the two places that document them: ARCHITECTURE.md and each stage's module docstring.

Also holds fetch's statuses in the code (every ``FetchError``, ``ImageError``, ``FetchResult`` status literal) to the closed list, since
fetch's reasons are produced by several modules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pipeline.core.reasons import (
    FETCH_OK,
    HTTP_FAMILY,
    STAGE_REASONS,
    ExtractReason,
    FetchReason,
    FilterImageReason,
    FilterTextReason,
    Reason,
    http_status_reason,
    is_fetch_reason,
)
from pipeline.stages import extract, fetch, filter_image, filter_text

ROOT = Path(__file__).resolve().parents[3]
SECTION = "## Rejection reasons (closed lists"


def _top_level(text: str) -> list[tuple[int, str]]:
    """``(position, character)`` of ``text`` outside parentheses."""
    depth, kept = 0, []
    for position, character in enumerate(text):
        if character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
        elif depth == 0:
            kept.append((position, character))
    return kept


def listed_names(text: str) -> list[str]:
    """The names a written list gives: after its header's colon, up to the end of that sentence, parenthesised
    remarks left out. ``fetch (`ok` is not one): `http_<code>` (e.g. `http_404`), `timeout`. More.`` ->
    ``["http_<code>", "timeout"]``. Names are in single or double backquotes."""
    text = " ".join(text.split())
    characters = _top_level(text)
    colon = next(index for index, (_, character) in enumerate(characters) if character == ":")
    kept = []
    for position, character in characters[colon + 1 :]:
        if character == "." and (position + 1 == len(text) or text[position + 1].isspace()):
            break
        kept.append(character)
    return re.findall(r"``?([a-z_<>]+)``?", "".join(kept))


def architecture_lists() -> dict[str, list[str]]:
    """Stage -> the names its bullet lists under ARCHITECTURE.md's rejection-reasons section."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert SECTION in text, f"ARCHITECTURE.md lost its section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    bullets = re.findall(r"^- ([a-z-]+)(.*(?:\n  .*)*)", section, flags=re.MULTILINE)
    return {stage: listed_names(body) for stage, body in bullets}


def paragraph(docstring: str, start: str) -> str:
    """The paragraph of ``docstring`` (blocks between blank lines) that starts with ``start``."""
    return next(block for block in docstring.split("\n\n") if block.startswith(start))


def docstring_list(stage: str) -> list[str]:
    """The closed list a stage module's docstring gives, in its order."""
    if stage == "extract":
        return listed_names(paragraph(extract.__doc__ or "", "Rejection reasons (closed list):"))
    if stage == "fetch":
        return listed_names(paragraph(fetch.__doc__ or "", "Statuses (the closed list"))
    if stage == "filter-text":
        # Numbered items: "1. ``duplicate_pair``: ...", "2. ``alt_too_short`` / 3. ``alt_too_long``: ..."
        return re.findall(r"\d+\. ``([a-z_]+)``", paragraph(filter_text.__doc__ or "", "1. "))
    if stage == "filter-image":
        return re.findall(r"^- ``([a-z_]+)``:", paragraph(filter_image.__doc__ or "", "Rules, in the order"), re.M)
    raise AssertionError(stage)


def enum_values(reasons: type[Reason]) -> list[str]:
    return [member.value for member in reasons]


def fetch_names(names: list[str]) -> set[str]:
    """fetch's documented names as a set comparable with the enum: ``ok`` and the ``http_<code>`` family apart."""
    assert FETCH_OK in names and HTTP_FAMILY in names, names
    return set(names) - {FETCH_OK, HTTP_FAMILY}


def test_every_stage_with_rejections_has_an_enum() -> None:
    assert set(STAGE_REASONS) == set(architecture_lists()) == {"extract", "filter-text", "fetch", "filter-image"}


@pytest.mark.parametrize("stage", sorted(STAGE_REASONS))
def test_architecture_lists_exactly_the_enum(stage: str) -> None:
    documented = architecture_lists()[stage]
    assert len(documented) == len(set(documented)), f"a reason listed twice: {documented}"
    expected = set(enum_values(STAGE_REASONS[stage]))
    if stage == "fetch":
        assert HTTP_FAMILY in documented
        documented = [name for name in documented if name != HTTP_FAMILY]
    assert set(documented) == expected


@pytest.mark.parametrize("stage", sorted(STAGE_REASONS))
def test_module_docstring_lists_exactly_the_enum(stage: str) -> None:
    documented = docstring_list(stage)
    if stage == "fetch":
        assert fetch_names(documented) == set(enum_values(FetchReason))
    else:
        # The enum keeps the docstring's order: for filter-text and filter-image it is the recording order.
        assert documented == enum_values(STAGE_REASONS[stage])


def test_members_read_as_their_plain_values() -> None:
    member = FilterTextReason.RARE_NGRAM
    assert (
        member == "rare_ngram" and str(member) == "rare_ngram" and f"filter-text:{member}" == "filter-text:rare_ngram"
    )
    assert type(str(member)) is str
    assert {ExtractReason.INVALID_URL: 1}["invalid_url"] == 1


def test_fetch_http_family() -> None:
    assert http_status_reason(404) == "http_404" and is_fetch_reason(http_status_reason(503))
    assert is_fetch_reason("timeout") and is_fetch_reason(FetchReason.NOT_ARCHIVED)
    assert not is_fetch_reason(FETCH_OK) and not is_fetch_reason("http_") and not is_fetch_reason("http_40x")
    assert not is_fetch_reason("image_too_small")


STATUS_CALLS = {"FetchError": 0, "ImageError": 0, "FetchResult": 1}  # the position of the status argument
STATUS_KEYWORDS = {"status", "error_status", "refusal_status"}


def _strings(node: ast.AST) -> list[str]:
    """The string literals of an expression; an f-string ``f"http_{code}"`` stands for the ``http_<code>`` family."""
    if isinstance(node, ast.JoinedStr):
        head = node.values[0] if node.values else None
        is_http = isinstance(head, ast.Constant) and head.value == "http_" and len(node.values) == 2
        return [HTTP_FAMILY if is_http else ast.unparse(node)]
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) else []
    return [text for child in ast.iter_child_nodes(node) for text in _strings(child)]


def fetch_statuses(path: Path) -> set[str]:
    """Every status a fetch module can write: string literals given as a status (the status argument of
    ``FetchError``/``ImageError``/``FetchResult``, ``*status=`` keywords and defaults, ``status = ...``) and ``FetchReason.X``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name in STATUS_CALLS and len(node.args) > STATUS_CALLS[name]:
                found.update(_strings(node.args[STATUS_CALLS[name]]))
            for keyword in node.keywords:
                if keyword.arg in STATUS_KEYWORDS:
                    found.update(_strings(keyword.value))
        elif isinstance(node, ast.arguments):
            named = [*node.posonlyargs, *node.args][-len(node.defaults) :] if node.defaults else []
            for argument, default in [
                *zip(named, node.defaults, strict=True),
                *zip(node.kwonlyargs, node.kw_defaults, strict=True),
            ]:
                if argument.arg.endswith("status") and default is not None:
                    found.update(_strings(default))
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "status" for t in node.targets):
            found.update(_strings(node.value))
        elif isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "FetchReason":
            found.add(FetchReason[node.attr].value)
    return found


def test_every_status_the_fetch_code_writes_is_in_the_closed_list() -> None:
    paths = [*(ROOT / "pipeline" / "net").glob("*.py"), ROOT / "pipeline" / "images" / "process.py"]
    paths.append(ROOT / "pipeline" / "stages" / "fetch.py")
    statuses = set().union(*(fetch_statuses(path) for path in paths))
    assert len(statuses) > 10, f"the scan found too few statuses to be scanning the fetch code: {statuses}"
    unknown = statuses - {FETCH_OK, HTTP_FAMILY}
    assert sorted(status for status in unknown if not is_fetch_reason(status)) == []
    # And the other way: a member no code writes is a stale entry of the closed list.
    assert set(enum_values(FetchReason)) <= statuses


def test_every_enum_member_is_a_snake_case_identifier() -> None:
    for reasons in (ExtractReason, FilterTextReason, FetchReason, FilterImageReason):
        for member in reasons:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", member.value), member
            assert member.name == member.value.upper()
