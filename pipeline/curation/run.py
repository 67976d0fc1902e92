"""The curation stage: staged ``documents`` -> ``curated`` documents, every drop recorded.

Passes, each streaming (memory bounded by one batch, global state on disk):

1. global, DuckDB: exact dedup over all domains; survivors numbered ``gidx`` in priority order
   (see ``exact_dedup``), one Parquet of survivors per domain;
2. per domain: the domain's quality filters on each batch; for documents that pass (in domains that
   take part), MinHash signatures into a memory-mapped array and LSH band keys into a Parquet table;
3. global: LSH buckets -> verified candidate pairs -> union-find clusters (``minhash``);
4. per domain: the kept documents, ``rejects.parquet`` (exact, filter and near-duplicate drops, each
   with reason, detail and ``duplicate_of``) and ``stats.json``, written atomically.

Per domain, ``rows_in = rows_kept + rows_dropped`` holds by construction and is re-checked by the
asset check. Order of the rules: exact duplicates first (cheapest), then filters, then near
duplicates among the documents the filters kept, so that a low-quality copy never becomes the
survivor that stands for a cluster (as in FineWeb and RefinedWeb, which filter before fuzzy dedup).
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config.curation import CurationConfig
from pipeline.config.typed import to_plain
from pipeline.curation import minhash as mh
from pipeline.curation.exact_dedup import exact_dedup
from pipeline.curation.filters import apply_filters, filters_for, rule_of
from pipeline.curation.guard import guard_verdict
from pipeline.schema import DOCUMENT_SCHEMA, REJECT_SCHEMA
from pipeline.spec import Spec
from pipeline.store import DataRoot, write_json

STAGE = "curated"  # output stage folder
REJECT_STAGE = "curation"  # the ``stage`` column of reject rows
NEAR_DUPLICATE = "near_duplicate"
log = logging.getLogger(__name__)

_PARQUET = dict(compression="zstd", compression_level=3)
_BANDS_SCHEMA = pa.schema([("id", pa.int64()), ("band", pa.int16()), ("key", pa.uint64())])


@dataclass
class DomainReport:
    domain: str
    profile: str
    rows_in: int = 0
    rows_kept: int = 0
    bytes_in: int = 0
    bytes_kept: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    # the same drops by rule ("gopher_quality.min_stop_words", "exact_duplicate", ...)
    drops_by_rule: dict[str, int] = field(default_factory=dict)
    # set when the stage dropped more of the domain than ``curation.guard`` allows (see guard.py)
    guard: dict | None = None

    @property
    def rows_dropped(self) -> int:
        return sum(self.drops.values())

    def to_dict(self) -> dict:
        return {**asdict(self), "rows_dropped": self.rows_dropped}


@dataclass(frozen=True)
class Seeds:
    tokens: int
    ngrams: int
    permutations: int
    bands: int

    @classmethod
    def from_base(cls, base: int) -> Seeds:
        return cls(base, base + 1, base + 2, base + 3)


def iter_text_batches(path: Path, columns: list[str], batch_bytes: int) -> Iterator[pl.DataFrame]:
    """Frames of about ``batch_bytes`` of text (a larger single document travels alone).

    Record batches are cut row-wise at the budget, so a row group of many large documents (a
    Gutenberg shelf) never becomes one huge frame.
    """
    pending: list[pa.RecordBatch] = []
    size = 0
    for rb in pq.ParquetFile(path).iter_batches(batch_size=256, columns=columns):
        lengths = pc.binary_length(rb.column(columns.index("text"))).to_numpy(zero_copy_only=False)
        start = 0
        while start < rb.num_rows:
            # take rows until this batch reaches the budget (at least one row)
            room = np.cumsum(lengths[start:]) + size
            stop = start + max(1, int(np.searchsorted(room, batch_bytes, side="left")) + 1)
            stop = min(stop, rb.num_rows)
            pending.append(rb.slice(start, stop - start))
            size = int(room[stop - start - 1])
            start = stop
            if size >= batch_bytes:
                yield pl.from_arrow(pa.Table.from_batches(pending))
                pending, size = [], 0
    if pending:
        yield pl.from_arrow(pa.Table.from_batches(pending))


class SignatureSink:
    """MinHash signatures by ``gidx`` in a memory-mapped .npy, band keys appended to Parquet."""

    def __init__(self, work: Path, n_docs: int, config, seeds: Seeds):
        self.config = config
        self.seeds = seeds
        self.sig = np.lib.format.open_memmap(work / "signatures.npy", mode="w+", dtype=np.uint32,
                                             shape=(max(n_docs, 1), config.num_perm))
        self.bands_path = work / "bands.parquet"
        self.writer = pq.ParquetWriter(self.bands_path, _BANDS_SCHEMA)
        self.rows = 0

    def add(self, ids: np.ndarray, texts: pl.Series) -> None:
        if len(ids) == 0:
            return
        c = self.config
        hashes, doc = mh.token_hashes(texts, c, self.seeds.tokens)
        hashes, doc = mh.ngram_hashes(hashes, doc, c.ngram, self.seeds.ngrams)
        sig = mh.signatures(hashes, doc, len(ids), num_perm=c.num_perm, seed=self.seeds.permutations)
        has = np.zeros(len(ids), dtype=bool)
        has[doc] = True  # a document without a single token has no signature and never matches
        self.sig[ids] = sig
        keys = mh.band_keys(sig[has], bands=c.bands, rows=c.rows, seed=self.seeds.bands)
        self.writer.write_table(mh.bands_frame(ids[has], keys).to_arrow().cast(_BANDS_SCHEMA))
        self.rows += int(has.sum())

    def resolve(self) -> pl.DataFrame:
        """(id, duplicate_of, jaccard, cluster_size) for every near duplicate to drop."""
        self.writer.close()
        if self.rows == 0:
            return pl.DataFrame(schema={"id": pl.Int64, "duplicate_of": pl.Int64, "jaccard": pl.Float64,
                                        "cluster_size": pl.Int64})
        return mh.resolve_clusters(pl.scan_parquet(self.bands_path), lambda ids: self.sig[ids], self.config)


def _domain_seeds(spec: Spec) -> Seeds:
    return Seeds.from_base(spec.seed_for("curation.minhash") & 0x7FFF_FFFF_FFFF)


def curate(
    spec: Spec,
    *,
    config: CurationConfig | None = None,
    root: DataRoot | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, DomainReport]:
    """Run the whole stage for every domain of ``spec``; returns a report per domain."""
    config = config or spec.curation
    root = root or DataRoot(spec.data_root)
    say = progress or log.info
    domains = spec.domains
    missing = [d for d in domains if not root.domain_dir("documents", d).exists()]
    if missing:
        raise FileNotFoundError(f"no staged documents for domain(s) {', '.join(missing)}: materialize `documents` first")
    files = {d: root.data_files("documents", [d]) for d in domains}
    work = root.stage_dir(STAGE) / f".work-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        if not config.enabled:
            return {d: _pass_through(root, d, files[d], config) for d in domains}
        return _curate(spec, config, root, domains, files, work, say)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _curate(spec, config: CurationConfig, root, domains, files, work, say) -> dict[str, DomainReport]:
    say(f"curation: exact dedup over {sum(map(len, files.values()))} files in {len(domains)} domains")
    exact = exact_dedup(files, {s.name: i for i, s in enumerate(spec.sources)}, config.exact_dedup, work,
                        excerpt_chars=config.excerpt_chars)
    say(f"curation: {exact.n_unique} unique of {sum(exact.rows_in.values())} documents")
    near_cfg = config.near_dedup
    sink = SignatureSink(work, exact.n_unique, near_cfg, _domain_seeds(spec)) if near_cfg.enabled else None
    filter_drops: dict[str, pl.DataFrame] = {}
    for domain in domains:
        resolved = config.for_domain(domain)
        chain = filters_for(resolved) if config.filters_enabled else []
        parts = []
        path = exact.unique_files.get(domain)
        for frame in (iter_text_batches(path, ["gidx", "text"], config.batch_bytes) if path else []):
            verdict = apply_filters(frame["text"], chain).with_columns(frame["gidx"])
            parts.append(verdict.filter(pl.col("reason").is_not_null()).select("gidx", "reason", "detail"))
            if sink is not None and resolved.near_dedup:
                keep = verdict["reason"].is_null().to_numpy()
                sink.add(frame["gidx"].to_numpy()[keep], frame["text"].filter(pl.Series(keep)))
        filter_drops[domain] = pl.concat(parts) if parts else pl.DataFrame(
            schema={"gidx": pl.Int64, "reason": pl.String, "detail": pl.String})
        say(f"curation: {domain} (profile {resolved.profile}): filters ({', '.join(f.name for f in chain) or 'none'}) dropped "
            f"{filter_drops[domain].height}")
    near = sink.resolve() if sink is not None else None
    near_by_domain = _near_rejects(near, exact.unique_files) if near is not None else {}
    say(f"curation: near-duplicates: {0 if near is None else near.height} dropped")
    reports = {}
    for domain in domains:
        drops = pl.concat([
            filter_drops[domain].with_columns(pl.lit(None, dtype=pl.String).alias("duplicate_of")),
            near_by_domain.get(domain, _EMPTY_DROPS),
        ], how="vertical_relaxed")
        reports[domain] = _write_domain(root, domain, exact, drops, config)
        if reports[domain].guard:
            log.warning(reports[domain].guard["message"])
            say(f"WARNING: {reports[domain].guard['message']}")
    return reports


_EMPTY_DROPS = pl.DataFrame(schema={"gidx": pl.Int64, "reason": pl.String, "detail": pl.String, "duplicate_of": pl.String})


def _near_rejects(near: pl.DataFrame, unique_files: dict[str, Path]) -> dict[str, pl.DataFrame]:
    """Near-duplicate drops per domain with the survivor's doc_id and where it lives."""
    if near.height == 0 or not unique_files:
        return {}
    index = pl.scan_parquet(list(unique_files.values())).select(
        "gidx", "domain", "doc_id", (pl.col("source") + ":" + pl.col("source_file") + "#" + pl.col("source_row").cast(pl.String)).alias("at")
    )
    wanted = pl.concat([near["id"], near["duplicate_of"]]).unique()
    index = index.filter(pl.col("gidx").is_in(wanted.implode())).collect()
    joined = (
        near.join(index.select("gidx", "domain"), left_on="id", right_on="gidx")
        .join(index.select(pl.col("gidx").alias("duplicate_of"), pl.col("doc_id").alias("survivor"), "at"), on="duplicate_of")
        .select(
            pl.col("id").alias("gidx"), "domain",
            pl.lit(NEAR_DUPLICATE).alias("reason"),
            pl.format("MinHash cluster of {} documents; estimated Jaccard {} with survivor {}",
                      "cluster_size", pl.col("jaccard").round(3), "at").alias("detail"),
            pl.col("survivor").alias("duplicate_of"),
        )
    )
    return {d: g.drop("domain") for (d,), g in joined.partition_by("domain", as_dict=True).items()}


def _write_domain(root: DataRoot, domain: str, exact, drops: pl.DataFrame, config: CurationConfig) -> DomainReport:
    resolved = config.for_domain(domain)
    report = DomainReport(domain=domain, profile=resolved.profile, rows_in=exact.rows_in.get(domain, 0))
    reasons: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    with root.write_domain(STAGE, domain) as out:
        (out / "data").mkdir()
        rejects = pq.ParquetWriter(out / "rejects.parquet", REJECT_SCHEMA, **_PARQUET)
        exact_rows = pl.scan_parquet(exact.rejects_file).filter(pl.col("domain") == domain).collect()
        if exact_rows.height:
            rejects.write_table(exact_rows.to_arrow().select(REJECT_SCHEMA.names).cast(REJECT_SCHEMA))
            reasons["exact_duplicate"] += exact_rows.height
            rules["exact_duplicate"] += exact_rows.height
            report.bytes_in += _exact_bytes(root, domain, exact_rows)
        writer = None
        path = exact.unique_files.get(domain)
        columns = ["gidx", *DOCUMENT_SCHEMA.names]
        for frame in (iter_text_batches(path, columns, config.batch_bytes) if path else []):
            report.bytes_in += int(frame["n_bytes"].sum())
            dropped = frame.join(drops, on="gidx", how="inner")
            kept = frame.join(drops, on="gidx", how="anti").sort("gidx")
            if dropped.height:
                rows = dropped.select(
                    pl.lit(REJECT_STAGE).alias("stage"), "domain", "source", "source_file", "source_row", "doc_id",
                    "reason", "detail", "duplicate_of", pl.col("text").str.slice(0, config.excerpt_chars).alias("excerpt"),
                )
                rejects.write_table(rows.to_arrow().cast(REJECT_SCHEMA))
                reasons.update(dict(dropped["reason"].value_counts().iter_rows()))
                rules.update(dict(_rule_keys(dropped).value_counts().iter_rows()))
            if kept.height:
                if writer is None:
                    writer = pq.ParquetWriter(out / "data" / "part-00000.parquet", DOCUMENT_SCHEMA, **_PARQUET)
                writer.write_table(kept.select(DOCUMENT_SCHEMA.names).to_arrow().cast(DOCUMENT_SCHEMA))
                report.rows_kept += kept.height
                report.bytes_kept += int(kept["n_bytes"].sum())
        if writer is not None:
            writer.close()
        rejects.close()
        report.drops = dict(sorted(reasons.items()))
        report.drops_by_rule = dict(rules.most_common())
        report.guard = guard_verdict(report, config.guard)
        write_json(out / "stats.json", {
            **report.to_dict(),
            "profile_reason": config.profile_choice(domain)[1],
            "config": {"exact_dedup": to_plain(config.exact_dedup), "near_dedup": to_plain(config.near_dedup),
                       "filters_enabled": config.filters_enabled, "domain": to_plain(resolved)},
        })
    return report


def _rule_keys(dropped: pl.DataFrame) -> pl.Series:
    """"<filter>.<rule>" for a filter drop, the reason alone for the others (duplicates)."""
    rule = rule_of(pl.col("detail"))
    is_filter = ~pl.col("reason").is_in([NEAR_DUPLICATE, "exact_duplicate"]) & rule.is_not_null()
    return dropped.select(pl.when(is_filter).then(pl.col("reason") + "." + rule).otherwise(pl.col("reason"))
                          .alias("rule")).to_series()


def _exact_bytes(root: DataRoot, domain: str, exact_rows: pl.DataFrame) -> int:
    keys = exact_rows.select("source", "source_file", "source_row")
    return int(root.scan("documents", [domain]).join(keys.lazy(), on=["source", "source_file", "source_row"])
               .select(pl.col("n_bytes").sum()).collect().item() or 0)


def _pass_through(root: DataRoot, domain: str, files: list[Path], config: CurationConfig) -> DomainReport:
    """A disabled stage still writes its output: every document kept, no rejects."""
    report = DomainReport(domain=domain, profile="disabled")
    with root.write_domain(STAGE, domain) as out:
        (out / "data").mkdir()
        for i, f in enumerate(files):
            shutil.copyfile(f, out / "data" / f"part-{i:05d}.parquet")
        pq.write_table(REJECT_SCHEMA.empty_table(), out / "rejects.parquet")
        if files:
            counts = pl.scan_parquet(files).select(pl.len(), pl.col("n_bytes").sum()).collect().row(0)
            report.rows_in = report.rows_kept = int(counts[0])
            report.bytes_in = report.bytes_kept = int(counts[1] or 0)
        write_json(out / "stats.json", {**report.to_dict(), "config": {"enabled": False}})
    return report


def check_accounting(root: DataRoot, domains: list[str]) -> dict[str, dict]:
    """Re-count from the files: rows staged = rows kept + rows rejected, per domain."""
    out = {}
    for domain in domains:
        rows_in = root.scan("documents", [domain]).select(pl.len()).collect().item()
        kept = root.scan(STAGE, [domain]).select(pl.len()).collect().item()
        dropped = root.scan_rejects(STAGE, [domain]).select(pl.len()).collect().item()
        stats = root.read_stats(STAGE, domain)
        ok = rows_in == kept + dropped and stats["rows_in"] == rows_in and stats["rows_kept"] == kept \
            and stats["rows_dropped"] == dropped
        out[domain] = {"rows_in": rows_in, "kept": kept, "dropped": dropped, "ok": ok}
    return out
