"""`curamix plan`: what a spec will cost before it runs, per asset, on this machine.

It reads a sample of every source (about ``sample_bytes`` of each source's files, whole documents) and
extrapolates to the whole corpus by file size: documents and text bytes per domain. Then it times the
expensive kernels for a few seconds on that sample, with the spec's own settings:

- reading the raw files (staging), the curation filters and MinHash signatures (curation);
- training a tokenizer and encoding with it (tokens per byte, for every token count below);
- one proxy training step of the spec's model, for 1 and for 4 population members (the proxy assets and
  the mixture's validation runs: members x steps x batch_size x seq_len tokens);
- the proxy's forward pass over the curated tokens (difficulty scores).

Each asset's expected time is its work divided by the measured rate. The figures are estimates: the
sample may not be typical of the corpus, pruning and the mixture fit are counted as small, and a machine
shared with other work is slower than when it was measured. ``curamix run`` prints each asset's progress
(proxy steps, documents scored) on the terminal as it goes, so an estimate can be checked while it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from pipeline.readers import read_source_file
from pipeline.spec import Spec

SAMPLE_BYTES = 1_000_000
# Text the kernels are timed on, spread over the sources (enough for stable rates, a few seconds of work).
CALIBRATION_TEXT_BYTES = 1_000_000
PROXY_PROBE_MEMBERS = (1, 4)


@dataclass
class Corpus:
    """Documents and text bytes per domain, extrapolated from a sample; the sample's texts; read rate."""

    documents: dict[str, float] = field(default_factory=dict)
    text_bytes: dict[str, float] = field(default_factory=dict)
    sample: list[str] = field(default_factory=list)
    file_bytes: float = 0.0
    read_seconds_per_file_byte: float = 0.0


def profile_corpus(spec: Spec, *, sample_bytes: int = SAMPLE_BYTES) -> Corpus:
    corpus = Corpus()
    sampled_file_bytes, read_seconds = 0.0, 0.0
    per_source_text = CALIBRATION_TEXT_BYTES // max(len(spec.sources), 1)
    for source in spec.sources:
        kept_text = 0
        files = spec.source_files[source.name]
        sizes = [f.stat().st_size for f in files]
        total = float(sum(sizes))
        docs = text = seen = 0.0
        started = time.perf_counter()
        for path, size in zip(files, sizes):
            for row in read_source_file(source, path):
                if row.text:
                    docs += 1
                    text += len(row.text.encode())
                    if kept_text < per_source_text:
                        corpus.sample.append(row.text[:per_source_text])
                        kept_text += min(len(row.text), per_source_text)
            seen += size
            if seen >= sample_bytes:
                break
        read_seconds += time.perf_counter() - started
        sampled_file_bytes += seen
        scale = total / seen if seen else 0.0
        corpus.documents[source.domain] = corpus.documents.get(source.domain, 0.0) + docs * scale
        corpus.text_bytes[source.domain] = corpus.text_bytes.get(source.domain, 0.0) + text * scale
        corpus.file_bytes += total
    corpus.read_seconds_per_file_byte = read_seconds / max(sampled_file_bytes, 1.0)
    return corpus


def _timed(fn: Callable[[], object], *, min_seconds: float = 0.5, max_runs: int = 20) -> float:
    """Seconds per call: one warm-up, then calls until ``min_seconds`` have passed."""
    fn()
    runs, started = 0, time.perf_counter()
    while runs < max_runs and (runs == 0 or time.perf_counter() - started < min_seconds):
        fn()
        runs += 1
    return (time.perf_counter() - started) / runs


@dataclass(frozen=True)
class Rates:
    curation_seconds_per_byte: float
    tokenizer_seconds_per_byte: float
    encode_seconds_per_byte: float
    bytes_per_token: float
    step_seconds: tuple[float, float]  # one proxy step with PROXY_PROBE_MEMBERS members
    forward_seconds_per_token: float

    def step(self, members: int) -> float:
        """One step of a population of ``members``: a line through the two probes."""
        (n1, n2), (t1, t2) = PROXY_PROBE_MEMBERS, self.step_seconds
        slope = max((t2 - t1) / (n2 - n1), 0.0)
        return max(t1 + slope * (members - n1), t1 * members / n1 * 0.1)


def calibrate(spec: Spec, corpus: Corpus) -> Rates:
    import torch

    from pipeline.curation import minhash as mh
    from pipeline.curation.filters import apply_filters, filters_for
    from proxies.model import PopulationLM
    from proxies.tokenizer import encode_batch, train_tokenizer

    texts = corpus.sample or ["empty"]
    sample = pl.Series(texts)
    sample_bytes = float(sum(len(t.encode()) for t in texts))
    domain = spec.domains[0]
    chain = filters_for(spec.curation.for_domain(domain))
    near = spec.curation.near_dedup

    def curate():
        apply_filters(sample, chain)
        hashes, doc = mh.token_hashes(sample, near, 1)
        hashes, doc = mh.ngram_hashes(hashes, doc, near.ngram, 2)
        mh.signatures(hashes, doc, len(texts), num_perm=near.num_perm, seed=3)

    curation = _timed(curate, min_seconds=0.3, max_runs=2) / sample_bytes
    started = time.perf_counter()
    tok = train_tokenizer(texts, vocab_size=spec.tokenizer.vocab_size, min_frequency=spec.tokenizer.min_frequency)
    tokenizer = (time.perf_counter() - started) / sample_bytes
    encoded: list = []
    encode = _timed(lambda: encoded.append(encode_batch(tok, texts)), min_seconds=0.3, max_runs=2) / sample_bytes
    n_tokens = sum(len(a) for a in encoded[-1]) or 1
    cfg = spec.proxies
    torch.manual_seed(0)
    seq, batch = cfg.model.seq_len, cfg.train.batch_size

    def step_time(members: int) -> float:
        model = PopulationLM(cfg.model, tok.get_vocab_size(), n_members=members)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        tokens = torch.randint(0, tok.get_vocab_size(), (members, batch, seq + 1))

        def one():
            model.member_losses(tokens).sum().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return _timed(one, min_seconds=0.5, max_runs=5)

    steps = tuple(step_time(n) for n in PROXY_PROBE_MEMBERS)
    scorer = PopulationLM(cfg.model, tok.get_vocab_size(), n_members=1).eval()
    windows = torch.randint(0, tok.get_vocab_size(), (1, max(1, cfg.score_batch_tokens // seq), seq + 1))
    with torch.no_grad():
        forward = _timed(lambda: scorer.token_losses(windows), min_seconds=0.3, max_runs=5)
    return Rates(curation_seconds_per_byte=curation, tokenizer_seconds_per_byte=tokenizer,
                 encode_seconds_per_byte=encode, bytes_per_token=sample_bytes / n_tokens, step_seconds=steps,
                 forward_seconds_per_token=forward / windows[0].numel())


@dataclass(frozen=True)
class AssetCost:
    asset: str
    work: str
    seconds: float | None  # None: not measured (small next to the rest)


def estimate(spec: Spec, corpus: Corpus, rates: Rates) -> list[AssetCost]:
    cfg = spec.proxies
    docs, text = sum(corpus.documents.values()), sum(corpus.text_bytes.values())
    tokens = text / rates.bytes_per_token
    step_tokens = cfg.train.batch_size * cfg.model.seq_len
    tok_bytes = min(text, spec.tokenizer.max_training_bytes)
    ref_steps = cfg.reference_steps or cfg.train.steps
    members = sum(s.n_mixtures * len(s.seeds) for s in cfg.sweeps)
    validation = spec.mixing.validation
    val_members = (1 + len(validation.baselines)) * validation.seeds if validation.enabled else 0
    val_steps = validation.steps or cfg.train.steps
    out_tokens = spec.output.total_tokens
    enabled = cfg.enabled
    return [
        AssetCost("documents", f"{docs:,.0f} documents, {text / 1e6:,.1f} MB of text from "
                  f"{corpus.file_bytes / 1e6:,.1f} MB of files", corpus.file_bytes * corpus.read_seconds_per_file_byte),
        AssetCost("curated_documents", f"{docs:,.0f} documents: filters, exact and MinHash dedup",
                  text * rates.curation_seconds_per_byte),
        AssetCost("tokenizer", f"BPE with {spec.tokenizer.vocab_size:,} tokens on {tok_bytes / 1e6:,.1f} MB",
                  tok_bytes * rates.tokenizer_seconds_per_byte),
        AssetCost("embeddings, concept_clusters, pruned_documents", f"{docs:,.0f} documents", None),
        AssetCost("reference_proxy", f"1 proxy x {ref_steps} steps x {step_tokens:,} tokens",
                  text * rates.encode_seconds_per_byte + ref_steps * rates.step(1) if enabled else 0.0),
        AssetCost("difficulty_scores", f"{docs:,.0f} documents, {tokens / 1e6:,.1f}M tokens (forward only)",
                  text * rates.encode_seconds_per_byte + tokens * rates.forward_seconds_per_token if enabled else 0.0),
        AssetCost("token_bins", f"{tokens / 1e6:,.1f}M tokens encoded", text * rates.encode_seconds_per_byte),
        AssetCost("proxy_runs", f"{members} proxies x {cfg.train.steps} steps x {step_tokens:,} tokens "
                  f"({members * cfg.train.steps * step_tokens / 1e6:,.1f}M tokens)",
                  cfg.train.steps * rates.step(members) if enabled and members else 0.0),
        AssetCost("mixture", f"{spec.mixing.method}; validation: {val_members} proxies x {val_steps} steps",
                  val_steps * rates.step(val_members) if enabled and val_members else 0.0),
        AssetCost("training_set", f"{out_tokens / 1e6:,.1f}M tokens (text encoded: "
                  f"{min(text, out_tokens * rates.bytes_per_token * spec.output.max_epochs) / 1e6:,.1f} MB at most)",
                  min(text, out_tokens * rates.bytes_per_token) * rates.encode_seconds_per_byte),
    ]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "small"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def render(spec: Spec, corpus: Corpus, costs: list[AssetCost], calibration_seconds: float) -> str:
    import os

    width = max(len(c.asset) for c in costs)
    load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs" if hasattr(os, "getloadavg") else ""
    lines = [f"plan for {spec.path.name}: {len(spec.domains)} domains, per domain (estimated from a sample):"]
    for d in spec.domains:
        lines.append(f"  {d}: {corpus.documents.get(d, 0):,.0f} documents, {corpus.text_bytes.get(d, 0) / 1e6:,.2f} MB")
    lines.append(f"per asset, with the expected time on this machine (calibrated in {calibration_seconds:.0f} s; {load}):")
    for c in costs:
        lines.append(f"  {c.asset:<{width}}  {duration(c.seconds):>9}  {c.work}")
    total = sum(c.seconds or 0.0 for c in costs)
    lines.append(f"  {'total':<{width}}  {duration(total):>9}  (a machine busy with other work takes longer)")
    return "\n".join(lines)


def plan_spec(spec: Spec, *, sample_bytes: int = SAMPLE_BYTES) -> tuple[str, list[AssetCost]]:
    started = time.perf_counter()
    corpus = profile_corpus(spec, sample_bytes=sample_bytes)
    rates = calibrate(spec, corpus)
    costs = estimate(spec, corpus, rates)
    return render(spec, corpus, costs, time.perf_counter() - started), costs


__all__ = ["AssetCost", "Corpus", "Rates", "calibrate", "estimate", "plan_spec", "profile_corpus"]
