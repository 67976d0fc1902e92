"""Every path under the data root, named once.

``Layout(root).token_bins`` instead of ``root / "token_bins"``: a folder renamed here moves for every stage
that reads or writes it. Per-domain document stages keep their ``<stage>/domain=<d>/`` shape (``DataRoot``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike) -> "Layout":
        return cls(Path(root))

    def stage(self, name: str) -> Path:
        """A per-domain document stage: documents, curated, pruned."""
        return self.root / name

    def domain(self, stage: str, domain: str) -> Path:
        return self.stage(stage) / f"domain={domain}"

    def work(self, stage: str, domain: str) -> Path:
        """Where a sharded stage keeps finished shards of one domain until it is assembled (kept across crashes)."""
        return self.stage(stage) / f".work-domain={domain}"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def tokenizer_json(self) -> Path:
        return self.tokenizer_dir / "tokenizer.json"

    @property
    def token_bins(self) -> Path:
        return self.root / "token_bins"

    @property
    def reference_proxy(self) -> Path:
        return self.root / "reference_proxy"

    @property
    def difficulty_scores(self) -> Path:
        return self.root / "difficulty_scores"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def concept_clusters(self) -> Path:
        return self.root / "concept_clusters"

    @property
    def proxy_runs(self) -> Path:
        return self.root / "proxy_runs"

    @property
    def mixture_json(self) -> Path:
        return self.root / "mixture" / "mixture.json"

    @property
    def training_set(self) -> Path:
        return self.root / "training_set"

    # -- proxies (x13) ----------------------------------------------------------------------------------------
    @property
    def tokenizer_meta(self) -> Path:
        return self.tokenizer_dir / "meta.json"

    @property
    def reference_bins(self) -> Path:
        """The bins the reference proxy trains on (the curated pool's, not the sweep's)."""
        return self.reference_proxy / "bins"

    def proxy_sweep(self, sweep: str) -> Path:
        """One sweep's ``results.parquet`` and ``meta.json``."""
        return self.proxy_runs / sweep

    @property
    def proxy_runs_work(self) -> Path:
        """Sweeps' finished populations until they are gathered (kept across crashes; outside ``proxy_runs``,
        whose Parquet files the mixers read)."""
        return self.root / ".proxy_runs.work"

    def proxy_sweep_work(self, sweep: str) -> Path:
        return self.proxy_runs_work / sweep

    @property
    def proxy_loss_curves(self) -> Path:
        return self.proxy_runs / "loss_curves.png"
