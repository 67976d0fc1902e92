"""Issue 17 item 7: spec_hash names what decides the data, not where it is written."""

from __future__ import annotations

import yaml

from pipeline.emission.writer import emit
from pipeline.spec import load_spec
from pipeline.store import DataRoot
from tests.test_emission_assets import _prepare_root, _small_spec


def _spec_at(tmp_path, name: str, **changes):
    data = yaml.safe_load(_small_spec(tmp_path).read_text())
    data["data_root"] = f"roots/{name}"
    data["output"] = {**data["output"], "path": f"sets/{name}"}
    data["operations"] = {"sensor": {"running": name == "b", "interval_seconds": 30 if name == "b" else 60}}
    for key, value in changes.items():
        data["output"][key] = value
    path = tmp_path / f"spec-{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_spec(path)


def test_spec_hash_is_the_same_under_two_data_roots(tmp_path):
    manifests = []
    for name in ("a", "b"):
        spec = _spec_at(tmp_path, name)
        root = DataRoot(spec.data_root)
        _prepare_root(root, spec.domains[:3])
        out, manifest = emit(spec, root=root)
        assert out == tmp_path / "sets" / name
        manifests.append(manifest)
    a, b = manifests
    assert a["spec_hash"] == b["spec_hash"]
    assert "data_root" in a["spec_hash_covers"] and "output.path" in a["spec_hash_covers"]
    assert a["sets"] == b["sets"]  # byte-identical shards (sizes and sha256), so one hash is right
    # What decides the data still changes the hash.
    assert _spec_at(tmp_path, "c", total_tokens=19_000).spec_hash != a["spec_hash"]
