"""Resources: where the spec is and where the data lives."""

from __future__ import annotations

import os

import dagster as dg

from pipeline.spec import DATA_ROOT_ENV, Spec, load_spec
from pipeline.store import DataRoot

SPEC_ENV = "CURAMIX_SPEC"


class CuramixResource(dg.ConfigurableResource):
    """The spec a run works from and its data root (``CURAMIX_DATA_ROOT`` overrides the spec's)."""

    spec_path: str
    data_root: str | None = None

    def load_spec(self) -> Spec:
        if self.data_root:
            previous = os.environ.get(DATA_ROOT_ENV)
            os.environ[DATA_ROOT_ENV] = self.data_root
            try:
                return load_spec(self.spec_path)
            finally:
                if previous is None:
                    del os.environ[DATA_ROOT_ENV]
                else:
                    os.environ[DATA_ROOT_ENV] = previous
        return load_spec(self.spec_path)

    def root(self) -> DataRoot:
        return DataRoot(self.load_spec().data_root)
