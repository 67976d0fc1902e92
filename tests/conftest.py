import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPORA = SHARED / "corpora" / "raw"
EXAMPLE_SPEC = REPO / "examples" / "default" / "spec.yaml"


def pytest_collection_modifyitems(config, items):
    if not CORPORA.exists():
        skip = pytest.mark.skip(reason=f"{CORPORA} not present")
        for item in items:
            if "needs_shared" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.setenv("CURAMIX_DATA_ROOT", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    return root
