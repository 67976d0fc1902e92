"""Curation: exact dedup, heuristic quality filters, MinHash-LSH near-dedup (see run.py)."""
