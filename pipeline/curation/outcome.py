"""What the `curated_documents` asset shows: counts, drops per domain and reason, previews, and its checks."""

from __future__ import annotations

from pipeline.config.curation import CurationConfig
from pipeline.config.typed import to_plain
from pipeline.content_version import stage_content_version
from pipeline.curation.report import DomainReport
from pipeline.curation.run import STAGE, check_accounting
from pipeline.engine.outcome import CheckOutcome, Markdown, StageOutcome, Table
from pipeline.store import DataRoot


def accounting_outcome(root: DataRoot, domains: list[str]) -> CheckOutcome:
    """Per domain: staged rows = kept + dropped, re-counted from the files (and stats.json agrees)."""
    counts = check_accounting(root, domains)
    problems = [f"{d}: staged {c['rows_in']} != kept {c['kept']} + dropped {c['dropped']} (or stats.json disagrees)"
                for d, c in counts.items() if not c["ok"]]
    return CheckOutcome(name="accounting", passed=not problems,
                        metadata={"per_domain": counts, "problems": "\n".join(problems) or "none"})


def guard_outcome(reports: dict[str, DomainReport], *, blocking: bool) -> CheckOutcome:
    """Fails when the stage dropped more of a domain than ``curation.guard`` allows."""
    over = {d: r.guard for d, r in reports.items() if r.guard}
    return CheckOutcome(name="drop_guard", passed=not over, severity="error" if blocking else "warn",
                        metadata={"over_limit": "\n".join(g["message"] for g in over.values()) or "none",
                                  "top_reasons": {d: g["top_reasons"] for d, g in over.items()}})


def _drops_rows(reports: dict[str, DomainReport]) -> list[dict]:
    reasons = sorted({r for rep in reports.values() for r in rep.drops})
    return [{"domain": d, "profile": rep.profile, "in": rep.rows_in, "kept": rep.rows_kept,
             **{r: rep.drops.get(r, 0) for r in reasons}} for d, rep in reports.items()]


def curation_outcome(root: DataRoot, domains: list[str], settings: CurationConfig, reports: dict[str, DomainReport],
                     *, guard_check: str) -> StageOutcome:
    """``guard_check``: the mode the asset's definitions declared (off | warn | block)."""
    warnings = [r.guard["message"] for r in reports.values() if r.guard]
    rejects = (root.scan_rejects(STAGE).select("domain", "source", "source_row", "reason", "detail", "duplicate_of")
               .head(10).collect())
    metadata = {
        "rows_in": sum(r.rows_in for r in reports.values()),
        "rows_kept": sum(r.rows_kept for r in reports.values()),
        "rows_dropped": sum(r.rows_dropped for r in reports.values()),
        "bytes_kept": sum(r.bytes_kept for r in reports.values()),
        "drops_by_domain": {d: r.drops for d, r in reports.items()},
        "drops_table": Table(_drops_rows(reports)),
        "drop_guard": Markdown("\n".join(f"- **WARNING** {m}" for m in warnings)
                               or f"no domain over the guard's limit ({settings.guard.max_drop_fraction})"),
        "profiles": {d: dict(zip(("profile", "why"), settings.profile_choice(d))) for d in domains},
        "rejects_preview": Table(rejects.to_dicts()),
        "config": _json_safe(to_plain(settings)),
        "path": root.stage_dir(STAGE),
    }
    checks = [accounting_outcome(root, domains)]
    if guard_check != "off":
        checks.append(guard_outcome(reports, blocking=guard_check == "block"))
    # What it wrote, not what it read: unchanged output leaves everything below fresh.
    return StageOutcome(metadata=metadata, data_version=stage_content_version(root, STAGE, domains), checks=checks)


def _json_safe(value):
    """Plain JSON values (a config may hold tuples or numbers as dict keys)."""
    import json

    return json.loads(json.dumps(value, default=str))
