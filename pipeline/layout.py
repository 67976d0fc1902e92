"""Every path under the data root, named once.

``Layout(root).token_bins`` instead of ``root / "token_bins"``: a folder renamed here moves for every stage
that reads or writes it. Per-domain document stages keep their ``<stage>/domain=<d>/`` shape (``DataRoot``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Inside every per-domain stage folder (``<stage>/domain=<d>/``, and its temporary twin while it is built).
DOMAIN_PARTS = "data"  # the Parquet parts
DOMAIN_REJECTS = "rejects.parquet"
DOMAIN_STATS = "stats.json"


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

    def domain_parts(self, stage: str, domain: str) -> Path:
        return self.domain(stage, domain) / DOMAIN_PARTS

    def domain_rejects(self, stage: str, domain: str) -> Path:
        return self.domain(stage, domain) / DOMAIN_REJECTS

    def domain_stats(self, stage: str, domain: str) -> Path:
        return self.domain(stage, domain) / DOMAIN_STATS

    def work(self, stage: str, domain: str) -> Path:
        """Where a sharded stage keeps finished shards of one domain until it is assembled (kept across crashes)."""
        return self.stage(stage) / f".work-domain={domain}"

    def stage_work(self, stage: str, step: str) -> Path:
        """Where one step of a stage over every domain (curation's passes) keeps its finished shards and
        intermediate results until the stage is assembled (kept across crashes)."""
        return self.stage(stage) / f".work-{step}"

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
    def mixture_dir(self) -> Path:
        """The chosen mixture: ``mixture.json``, its report and plots."""
        return self.root / "mixture"

    @property
    def mixture_json(self) -> Path:
        return self.mixture_dir / "mixture.json"

    @property
    def training_set(self) -> Path:
        """The training set's default place (``output.path`` may put it elsewhere)."""
        return self.root / "training_set"

    # -- pruning and difficulty scores (files inside the folders above) ------------------------------------
    def work_dir(self, name: str) -> Path:
        """Where an unpartitioned sharded stage keeps its finished shards until ``finish`` (kept across crashes)."""
        return self.root / f".{name}.work"

    @property
    def embeddings_file(self) -> Path:
        return self.embeddings / "embeddings.parquet"

    @property
    def embeddings_meta(self) -> Path:
        return self.embeddings / "meta.json"

    @property
    def cluster_assignments(self) -> Path:
        return self.concept_clusters / "assignments.parquet"

    @property
    def cluster_centroids(self) -> Path:
        return self.concept_clusters / "centroids.npy"

    @property
    def cluster_summary(self) -> Path:
        return self.concept_clusters / "clusters.json"

    @property
    def difficulty_scores_file(self) -> Path:
        return self.difficulty_scores / "scores.parquet"

    @property
    def pruning_report(self) -> Path:
        return self.stage("pruned") / "report.json"

    @property
    def pruning_plot(self) -> Path:
        return self.stage("pruned") / "report.png"

    @property
    def training_manifest(self) -> Path:
        return self.training_set / "manifest.json"

    @property
    def dagster_home(self) -> Path:
        """Dagster's instance folder when ``DAGSTER_HOME`` is not set."""
        return self.root / "dagster_home"

    @property
    def sensor_file_states(self) -> Path:
        """The raw-files sensor's fingerprints of the files it has seen."""
        return self.root / ".curamix" / "sensor" / "file_states.json"

    @property
    def leases(self) -> Path:
        """Each running stage's lease on its work folders (``pipeline.workdirs``)."""
        return self.root / ".curamix" / "leases"

    def top_level_names(self) -> list[str]:
        """The first path component of every named path: what must not be spelled out elsewhere
        (``tests/test_layout.py`` looks for these literals)."""
        names = {getattr(self, a).relative_to(self.root).parts[0] for a, v in vars(Layout).items()
                 if isinstance(v, property)}
        return sorted(names)

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
        return self.work_dir("proxy_runs")

    def proxy_sweep_work(self, sweep: str) -> Path:
        return self.proxy_runs_work / sweep

    @property
    def proxy_loss_curves(self) -> Path:
        return self.proxy_runs / "loss_curves.png"
