"""Emission's tokenization on the stage contract: one shard task per domain builds that domain's token cache.

The cache (``tokencache.build_domain_cache``) already names itself by a fingerprint of its inputs and is
renamed into place when complete, so a finished domain is reused by the next run whatever stopped it;
this stage only lets the domains run on the spec's engine (``execution``), in parallel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from pipeline.config.execution import ExecutionConfig
from pipeline.emission.tokencache import DomainCache, build_domain_cache
from pipeline.engine import ShardTask, run_stage


@dataclass
class TokenCacheStage:
    domain_files: dict[str, list[Path]]
    fingerprints: dict[str, str]
    cache_root: Path
    tokenizer_json: str
    dtype: str
    batch_bytes: int
    name: str = "training_set_tokens"
    version: str = "token-cache-1"

    @property
    def work_dir(self) -> Path:
        return self.cache_root.with_name(f".{self.cache_root.name}.work")

    def plan(self) -> list[ShardTask]:
        return [ShardTask(key=d, inputs=tuple(map(str, files)), settings={"fingerprint": self.fingerprints[d]}, seed=0)
                for d, files in self.domain_files.items()]

    def _build(self, domain: str, tokenizer: Tokenizer) -> DomainCache:
        return build_domain_cache(domain, self.domain_files[domain], cache_root=self.cache_root, tokenizer=tokenizer,
                                  dtype=np.dtype(self.dtype), fp=self.fingerprints[domain], batch_bytes=self.batch_bytes)

    def run_shard(self, task: ShardTask, out: Path) -> dict:
        cache = self._build(task.key, Tokenizer.from_str(self.tokenizer_json))
        return {"documents": len(cache.lengths)}

    def finish(self, results: list[dict]) -> dict[str, DomainCache]:
        # Each cache is complete by now: building it again only checks its fingerprint and opens it.
        tokenizer = Tokenizer.from_str(self.tokenizer_json)
        return {d: self._build(d, tokenizer) for d in self.domain_files}


def tokenize_domains(domain_files: dict[str, list[Path]], *, fingerprints: dict[str, str], cache_root: Path,
                     tokenizer: Tokenizer, dtype: np.dtype, batch_bytes: int,
                     execution: ExecutionConfig | None = None,
                     progress: Callable[[str], None] | None = None) -> dict[str, DomainCache]:
    """Every domain's token cache, domains in parallel on ``execution``'s engine."""
    stage = TokenCacheStage(domain_files={d: sorted(f) for d, f in domain_files.items()}, fingerprints=fingerprints,
                            cache_root=Path(cache_root), tokenizer_json=tokenizer.to_str(),
                            dtype=np.dtype(dtype).name, batch_bytes=batch_bytes)
    return run_stage(stage, execution=execution, progress=progress)
