"""Proxy language models: the measuring instrument for mixing (RegMix, Aioli) and SeTa's difficulty scores.

Modules, each one step with plain inputs and outputs (no Dagster here; the assets in ``assets/proxies.py`` hand their outcomes to the adapter):
  tokenizer.py   byte-level BPE trained offline (HF ``tokenizers``), saved tokenizer.json + sha256
  bins.py        per-domain train/validation token arrays (split by document), target sets; ``Bins.open``
  model.py       ``PopulationLM``: N decoder-only LMs (RMSNorm, RoPE, SwiGLU) with stacked weights
  loader.py      mixture-sampling batches (a mixture or a schedule of mixtures), deterministic from a seed
  population.py  ``train_population(bins, mixtures, config, seed) -> results table`` (columns documented there)
  scoring.py     mean token loss per document with a trained proxy
  sweep.py       saving/loading a proxy (sweep mixtures: ``mixers.regmix.sampling.sample_sweep_mixtures``)
  sweep_stage.py one sweep on the stage contract: a shard task per population; the sweep's cache and run ids
  runs.py        the `proxy_runs` stage (every sweep) -> StageOutcome
  tokenizer_stage.py, reference.py   the `tokenizer` and `reference_proxy` stages -> StageOutcome
  online.py      Aioli's online trainer and the validation runs, on population.py's training step
"""
