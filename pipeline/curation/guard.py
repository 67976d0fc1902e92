"""The drop guard: a stage that removes most of a domain says so loudly, with the top reasons.

A corpus the filters were never tuned on (documentation curated as prose, say) can lose most of a
domain to one rule; the run still "succeeds". The guard compares what a stage dropped with
``curation.guard.max_drop_fraction`` (of the domain's documents or of its bytes, whichever is larger)
and returns a verdict that the stage writes to ``stats.json``, logs as a warning, and the asset shows
in its metadata (and, with ``guard.check``, as an asset check that can block what follows).
"""

from __future__ import annotations

TOP_REASONS = 3


def guard_verdict(report, guard) -> dict | None:
    """None when the domain is within the limit, else the figures and a one-line message.

    ``report`` has rows_in/rows_kept/bytes_in/bytes_kept, ``drops_by_rule`` and ``domain``; ``guard`` is a
    ``GuardConfig``.
    """
    limit = guard.max_drop_fraction
    if limit is None or report.rows_in == 0:
        return None
    rows = 1 - report.rows_kept / report.rows_in
    size = 1 - report.bytes_kept / report.bytes_in if report.bytes_in else rows
    share = max(rows, size)
    if share <= limit:
        return None
    top = sorted(report.drops_by_rule.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]
    reasons = ", ".join(f"{rule} {count}" for rule, count in top)
    message = (f"curation dropped {rows:.0%} of {report.domain}'s documents ({size:.0%} of its bytes), more than the "
               f"guard's {limit:.0%}; top reasons: {reasons or 'none'}")
    if top and "." in top[0][0]:  # a quality rule, not duplicates: the profile is the likely cause
        message += (f" (profile {report.profile}: check it with `curamix validate --sample 200`, or set "
                    f"curation.domains.{report.domain}.profile)")
    return {"exceeded": True, "limit": limit, "rows_dropped_fraction": round(rows, 4),
            "bytes_dropped_fraction": round(size, 4), "top_reasons": dict(top), "message": message}
