"""Resources: where the spec is and where the data lives."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from pipeline.spec import Spec, load_spec
from pipeline.store import DataRoot
from pipeline.workdirs import clean_stale_work, release_lease, take_lease

SPEC_ENV = "CURAMIX_SPEC"

# Output folder under the data root of the assets whose folder is not named after them.
ASSET_FOLDERS = {"curated_documents": "curated", "pruned_documents": "pruned"}


def asset_folder(key: dg.AssetKey) -> str:
    name = key.to_user_string()
    return ASSET_FOLDERS.get(name, name)


class CuramixResource(dg.ConfigurableResource):
    """The spec a run works from and its data root (``CURAMIX_DATA_ROOT`` overrides the spec's).

    When a run starts, it takes a lease on the output folder of every asset it materializes and removes
    the temporary work folders a crashed run left there, unless another live run holds that folder
    (``pipeline.workdirs``); the leases are released when the run's step ends."""

    spec_path: str
    data_root: str | None = None
    _leases: list = PrivateAttr(default_factory=list)

    def load_spec(self) -> Spec:
        return load_spec(self.spec_path, data_root=self.data_root)

    def root(self) -> DataRoot:
        return DataRoot(self.load_spec().data_root)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.dagster_run
        if run is None or not run.asset_selection:
            return
        try:
            root = Path(self.load_spec().data_root)
        except Exception:  # noqa: BLE001 - a broken spec fails in the asset itself, with its message
            return
        for folder in sorted({asset_folder(k) for k in run.asset_selection}):
            lease = take_lease(root, folder)
            self._leases.append(lease)
            removed = clean_stale_work(root, folder, own_lease=lease)
            if removed and context.log is not None:
                context.log.info(f"removed {len(removed)} work folder(s) a stopped run left in {root / folder}: "
                                 + ", ".join(p.name for p in removed[:5]))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for lease in self._leases:
            release_lease(lease)
        self._leases.clear()
