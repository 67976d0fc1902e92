"""Resources: where the spec is and where the data lives."""

from __future__ import annotations


import dagster as dg

from pipeline.spec import Spec, load_spec
from pipeline.store import DataRoot

SPEC_ENV = "CURAMIX_SPEC"


class CuramixResource(dg.ConfigurableResource):
    """The spec a run works from and its data root (``CURAMIX_DATA_ROOT`` overrides the spec's)."""

    spec_path: str
    data_root: str | None = None

    def load_spec(self) -> Spec:
        return load_spec(self.spec_path, data_root=self.data_root)

    def root(self) -> DataRoot:
        return DataRoot(self.load_spec().data_root)
