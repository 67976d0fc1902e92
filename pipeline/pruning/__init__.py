"""Pruning: embeddings, concept clusters, SemDeDup, DBP, SSL prototypes, SeTa (static and sampler).

Modules (each metric a plain function on arrays; ``run.py`` wires them to the data root; nothing
here imports Dagster):

- ``embed``: one L2-normalized float32 vector per doc_id (hashing -> TF-IDF -> SVD, no download;
  sentence-transformers from a local folder as an option) -> ``<root>/embeddings/``;
- ``clusters``: spherical k-means (torch, GPU when present) -> ``<root>/concept_clusters/``;
- ``semdedup``: SemDeDup with the reference's non-greedy "any earlier member" rule;
- ``dbp``: complexity of concept clusters, softmax shares, capped-simplex budgets, least
  prototypical kept;
- ``ssl_prototypes``: SSL prototypes and the random baseline;
- ``seta``: SeTa's static metric on proxy losses and ``SeTaSampler``, the per-epoch SeTa/InfoBatch
  schedule for training jobs (``from pipeline.pruning.seta import SeTaSampler``);
- ``run``: the ``pruned`` stage (kept documents, rejects with metric and score, stats, report).
"""

STAGE = "pruned"
INPUT_STAGE = "curated"
