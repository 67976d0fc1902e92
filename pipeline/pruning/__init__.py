"""Pruning: embeddings, concept clusters, SemDeDup, DBP, SSL prototypes, SeTa (static and sampler).

Modules (each metric a plain function on arrays; ``run.py`` wires them to the data root; nothing
here imports Dagster):

- ``embed``: one L2-normalized float32 vector per doc_id (hashing -> TF-IDF -> SVD, no download;
  ``minilm``: all-MiniLM-L6-v2 installed offline, our own BERT forward in ``minilm``; ``proxy``: D4-style
  mean-pooled hidden states of a proxy LM, ``proxies/embedding.py``; sentence-transformers from a local
  folder) -> ``<root>/embeddings/``;
- ``clusters``: spherical k-means (torch, GPU when present) -> ``<root>/concept_clusters/``;
- ``semdedup``: SemDeDup with the reference's non-greedy "any earlier member" rule;
- ``dbp``: complexity of concept clusters, softmax shares, capped-simplex budgets, least
  prototypical kept;
- ``ssl_prototypes``: SSL prototypes and the random baseline;
- ``seta``: SeTa's static metric on proxy losses and ``SeTaSampler``, the per-epoch SeTa/InfoBatch
  schedule for training jobs (``from pipeline.pruning.seta import SeTaSampler``);
- ``methods``: every method behind one interface (``select`` which candidates stay, with reason and
  details), registered by name; ``semdedup+dbp`` is a chain of two;
- ``examples``: representative / outlying kept and dropped documents of a few clusters for the report;
- ``run``: the ``pruned`` stage (kept documents, rejects with metric and score, stats, report).
"""

STAGE = "pruned"
INPUT_STAGE = "curated"
