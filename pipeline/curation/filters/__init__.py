"""Heuristic quality filters, one per module of this package, registered by name.

Adding a filter means adding one module here: a ``DocFilter`` subclass (``base.py``) with a ``name``,
an ``order`` in the chain, a ``Config`` dataclass (its prose defaults; the spec section
``curation.<name>``), optionally ``profiles`` (what each profile changes in that config), and
``rules(batch)``. Every module of the package is imported below, which registers its filter; the
spec then accepts ``curation.<name>`` and ``curation.domains.<d>.<name>``, ``curamix defaults`` lists
it, and the stage runs it. Filters are evaluated on a whole batch of documents at once with polars.
"""

from __future__ import annotations

import importlib
import pkgutil

from pipeline.curation.filters.base import (FILTERS, Batch, DocFilter, Rule, apply_filters, filters_for, registered,
                                            rule_of)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

# The built-in filters under their historical import path.
from pipeline.curation.filters.c4 import C4Config, C4Filter  # noqa: E402
from pipeline.curation.filters.gopher_quality import GopherQualityConfig, GopherQualityFilter  # noqa: E402
from pipeline.curation.filters.gopher_repetition import GopherRepetitionConfig, GopherRepetitionFilter  # noqa: E402

__all__ = ["FILTERS", "Batch", "DocFilter", "Rule", "apply_filters", "filters_for", "registered", "rule_of",
           "C4Config", "C4Filter", "GopherQualityConfig", "GopherQualityFilter", "GopherRepetitionConfig",
           "GopherRepetitionFilter"]
