"""Pruning: embeddings, concept clusters, SemDeDup, DBP, SSL prototypes, SeTa (static and sampler).

Each metric is a plain function on arrays (see the module of its name); ``run.py`` wires them to the
data root. Nothing here imports Dagster.
"""

STAGE = "pruned"
INPUT_STAGE = "curated"
