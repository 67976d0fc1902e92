"""Spec section `execution.ray`: where the `ray` engine finds its cluster and what each shard task asks of it.

Like the rest of `execution`, it changes where shard tasks run, never what they write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_GCS_ADDRESS = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d+$")


@dataclass(frozen=True)
class RayConfig:
    # "auto": the cluster named by RAY_ADDRESS, else the one `ray start` runs on this node;
    # "ray://host:port": a remote cluster through Ray Client (the driver stays here);
    # "host:port": the head node's GCS address (this process joins the cluster as a driver);
    # "local": a private one-node Ray started by this process (tests, a laptop).
    address: str = "auto"
    # Resources each of the engine's actors reserves (an actor runs one shard task at a time): the driver starts as
    # many as these fit the cluster. Fractions are allowed (0.5 GPU: two actors share a GPU).
    num_cpus_per_task: float = 1.0
    num_gpus_per_task: float = 0.0
    # Memory each task reserves for scheduling (Ray does not enforce it); null reserves none.
    memory_per_task_mb: int | None = None
    # How often an actor is restarted, and its task re-run, after its process or node died (killed, out of memory,
    # preempted).
    # An exception raised by the task itself (bad input) is not retried: it fails the same way every time.
    max_retries: int = 3
    # At most this many actors, so shard tasks running at once; null: as many as the cluster's resources fit.
    max_in_flight: int | None = None
    # Only for address "local": CPUs and object store of the private Ray, and its session folder
    # (null: every core, Ray's default store size, a fresh folder under the system temp dir).
    local_num_cpus: int | None = None
    local_object_store_mb: int | None = None
    local_temp_dir: str | None = None

    def __post_init__(self) -> None:
        if not (self.address in ("auto", "local") or self.address.startswith("ray://")
                or _GCS_ADDRESS.match(self.address)):
            raise ValueError(f"address must be auto, local, ray://host:port or host:port, got {self.address!r}")
        if self.num_cpus_per_task < 0 or self.num_gpus_per_task < 0:
            raise ValueError("num_cpus_per_task and num_gpus_per_task must not be negative")
        if self.max_retries < 0:
            raise ValueError("max_retries must not be negative")
        for name in ("memory_per_task_mb", "max_in_flight", "local_num_cpus", "local_object_store_mb"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or null)")
