"""WAT against WARC on the same crawl files: pairs found and CPU seconds per file, side by side, and what WAT loses.

A WAT file holds, per page, the links Common Crawl's parser extracted (``IMG@/src`` with its ``alt``, the ``<base>``
of the head); it is about a third of its WARC's size and needs no HTML parsing, which is why cc2dataset reads WATs.
What it cannot give: the URL of an ``<img>`` that has no ``src`` (only a ``srcset``), the real URL behind a lazy
loader's placeholder (``src="data:..." data-src="..."``: the WAT lists the placeholder, which extract rejects as
``unsupported_url_scheme``), the page's ``<html lang>``, and the archived image responses fetch can use instead of
the network. ``compare_sources`` measures it on local copies (a simulated mirror, or downloaded files), so the CPU
seconds are extract's own, without the network.

``python -m pipeline.crawl.compare --mirror DIR [--files N]`` prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.core.config import CorpusConfig
from pipeline.stages.extract import iter_extracted
from schemas import Candidate


def read_source(path: Path, config: CorpusConfig) -> dict[str, Any]:
    """One file through extract's per-record path: candidates, distinct pairs, rows by URL attribute, CPU seconds."""
    counts: Counter = Counter()
    pairs: dict[tuple[str, str], str] = {}
    tags: Counter = Counter()
    langs = 0
    started = time.process_time()
    for tag, row in iter_extracted(str(path), str(path), config, counts):
        tags[tag] += 1
        if tag == "candidates":
            pairs.setdefault((row[Candidate.IMAGE_URL], row[Candidate.ALT_TEXT]), row[Candidate.URL_ATTRIBUTE])
            langs += row[Candidate.HTML_LANG] is not None
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "cpu_s": time.process_time() - started,
        "candidates": tags["candidates"],
        "rejected": tags["rejected"],
        "archived_images": tags["archived_images"],
        "with_html_lang": langs,
        "pairs": pairs,
    }


def compare_sources(mirror: str | Path, files: int | None = None, config: CorpusConfig | None = None) -> dict[str, Any]:
    """For each WARC file of a mirror (``simulation.json``'s lists, in order) and its WAT twin: the two readings
    side by side, and the WARC's distinct pairs the WAT does not have, by the URL attribute they came from."""
    root = Path(mirror)
    plan = json.loads((root / "simulation.json").read_text())
    config = config or CorpusConfig()
    per_file = []
    lost: Counter = Counter()
    totals: Counter = Counter()
    for warc_rel, wat_rel in list(zip(plan["warc_files"], plan["wat_files"], strict=True))[:files]:
        warc = read_source(root / warc_rel, config)
        wat = read_source(root / wat_rel, config)
        missing = set(warc["pairs"]) - set(wat["pairs"])
        lost.update(warc["pairs"][pair] for pair in missing)
        row = {
            "warc_file": warc["file"],
            "warc_bytes": warc["bytes"],
            "wat_bytes": wat["bytes"],
            "warc_pairs": len(warc["pairs"]),
            "wat_pairs": len(wat["pairs"]),
            "warc_cpu_s": round(warc["cpu_s"], 4),
            "wat_cpu_s": round(wat["cpu_s"], 4),
            "wat_rejected": wat["rejected"],
            "warc_archived_images": warc["archived_images"],
            "warc_with_html_lang": warc["with_html_lang"],
        }
        per_file.append(row)
        totals.update({key: value for key, value in row.items() if isinstance(value, (int, float))})
    return {"files": per_file, "totals": dict(totals), "lost_in_wat_by_attribute": dict(lost.most_common())}


def format_comparison(result: dict[str, Any]) -> str:
    """The comparison as a plain table, with the totals and what WAT lost."""
    lines = [
        f"{'file':<48} {'WARC pairs':>10} {'WAT pairs':>9} {'WARC cpu s':>10} {'WAT cpu s':>9} {'WARC MB':>8} {'WAT MB':>7}"
    ]
    for row in [*result["files"], {"warc_file": "total", **result["totals"]}]:
        lines.append(
            f"{row['warc_file']:<48} {row['warc_pairs']:>10} {row['wat_pairs']:>9} {row['warc_cpu_s']:>10.3f} "
            f"{row['wat_cpu_s']:>9.3f} {row['warc_bytes'] / 1e6:>8.2f} {row['wat_bytes'] / 1e6:>7.2f}"
        )
    lost = ", ".join(f"{attribute} {count}" for attribute, count in result["lost_in_wat_by_attribute"].items())
    lines.append(f"pairs only in the WARC, by the attribute their URL came from: {lost or 'none'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.crawl.compare --mirror DIR [--files N]``."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.crawl.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", required=True, help="A mirror written by pipeline.crawl.simulate")
    parser.add_argument("--files", type=int, default=None, help="Only the first N WARC/WAT pairs")
    args = parser.parse_args(argv)
    print(format_comparison(compare_sources(args.mirror, args.files)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
