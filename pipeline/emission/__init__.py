"""Emission: sharded training sets with exact per-domain token quotas, a manifest, and a verifier.

See ``writer`` for the layout and crash-safety contract, ``quotas`` for how budgets become quotas,
``verify`` for what is checked, and ``dataset`` for reading the shards in a training loop.
"""
