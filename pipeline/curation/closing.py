"""The closing lines of a run: what staging rejected and quarantined, what curation dropped and what
pruning kept, per domain.

Read from each stage's ``stats.json`` (nothing is recomputed), so ``curamix run`` can end with a word
on what was lost instead of a bare "done", and a domain over the drop guard says so again there.
"""

from __future__ import annotations

import json

from pipeline.store import DataRoot


def _stats(root: DataRoot, stage: str, domain: str) -> dict | None:
    try:
        return root.read_stats(stage, domain)
    except (OSError, json.JSONDecodeError):
        return None


def closing_lines(root: DataRoot, domains: list[str]) -> list[str]:
    """One line per domain that staging or curation has written, plus the guard's warnings."""
    lines, warnings = [], []
    for domain in domains:
        parts = []
        staged = _stats(root, "documents", domain)
        if staged is not None:
            quarantined_rows = staged["rejects_by_reason"].get("quarantined_file", 0)
            files = sum(len(s.get("quarantined_files", [])) for s in staged["sources"].values())
            parts.append(f"staging rejected {staged['rows_rejected']} of {staged['rows_read']} rows "
                         f"({quarantined_rows} rows in {files} quarantined files)")
        curated = _stats(root, "curated", domain)
        if curated is not None:
            share = curated["rows_dropped"] / curated["rows_in"] if curated["rows_in"] else 0.0
            parts.append(f"curation ({curated['profile']}) dropped {curated['rows_dropped']} of {curated['rows_in']} "
                         f"({share:.0%})")
            if curated.get("guard"):
                warnings.append(f"WARNING: {curated['guard']['message']}")
        pruned = _stats(root, "pruned", domain)
        if pruned is not None and "rows_in" in pruned and "rows_kept" in pruned:
            parts.append(f"pruning ({pruned.get('method', '?')}) kept {pruned['rows_kept']} of {pruned['rows_in']}")
        if parts:
            lines.append(f"  {domain}: " + "; ".join(parts))
    if lines:
        lines.insert(0, "rejected and quarantined, per domain:")
    return lines + warnings
