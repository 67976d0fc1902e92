"""Dagster's own staleness (what the UI's "stale" marker shows), asked from outside the webserver.

``curamix run --stale-only`` and the sensor both ask it. Dagster's resolver is not in its public API, so it
is pinned with the dagster version in pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContext


class InstanceLoadingContext(LoadingContext):
    """The batch-loading scope Dagster's staleness resolver reads the event log through (the UI's request
    context plays this part in the webserver)."""

    def __init__(self, instance: dg.DagsterInstance):
        self._instance, self._loaders = instance, {}

    @property
    def instance(self) -> dg.DagsterInstance:
        return self._instance

    @property
    def loaders(self) -> dict:
        return self._loaders


def resolver(instance: dg.DagsterInstance, graph: BaseAssetGraph) -> CachingStaleStatusResolver:
    """A fresh resolver (it caches: make a new one after anything was materialized)."""
    return CachingStaleStatusResolver(instance, graph, InstanceLoadingContext(instance))


def is_fresh(status_of: CachingStaleStatusResolver, graph: BaseAssetGraph, key: dg.AssetKey,
             partition: str | None = None, *, instance: dg.DagsterInstance | None = None) -> bool:
    """FRESH for ``partition`` (or, for a partitioned asset asked without one, for every partition)."""
    partitions = graph.get(key).partitions_def
    if partitions is None or partition is not None:
        return status_of.get_status(key, partition) == StaleStatus.FRESH
    keys = partitions.get_partition_keys(dynamic_partitions_store=instance)
    return all(status_of.get_status(key, p) == StaleStatus.FRESH for p in keys)


def stale_frontier(instance: dg.DagsterInstance, graph: BaseAssetGraph, keys: Iterable[dg.AssetKey]) -> list[dg.AssetKey]:
    """Of ``keys`` (in dependency order), the ones that are not fresh while every parent among ``keys`` is:
    what can run now. What lies below them is decided after they ran: a stage that writes what it wrote
    before keeps its data version, and then nothing below it is stale."""
    keys = list(keys)
    status_of = resolver(instance, graph)
    stale = {k for k in keys if not is_fresh(status_of, graph, k, instance=instance)}
    return [k for k in keys if k in stale and not (graph.get(k).parent_keys & stale)]


__all__ = ["InstanceLoadingContext", "is_fresh", "resolver", "stale_frontier"]
