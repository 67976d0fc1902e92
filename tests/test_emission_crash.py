"""Crash safety: SIGKILL an emitting subprocess at random moments; a manifest never vouches for
incomplete data, and a re-run finishes the same bytes as a clean build, with nothing duplicated."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.emission.verify import verify
from tests.test_emission_support import small_inputs

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
from pathlib import Path
from pipeline.config.output import OutputConfig
from pipeline.emission.writer import EmissionInputs, emit_training_set
args = json.loads(sys.argv[1])
inputs = EmissionInputs(domain_files={d: [Path(p) for p in v] for d, v in args["files"].items()},
                        tokenizer_path=Path(args["tok"]), seed=3,
                        mixture={"proportions": {"code": 0.3, "law": 0.3, "math": 0.2, "intl": 0.2}, "method": "t"})
config = OutputConfig(total_tokens=args["total"], shard_tokens=8_000, max_epochs=50.0, encode_batch_bytes=4_000)
emit_training_set(inputs, config=config, out_dir=Path(args["out"]), progress=lambda m: print(m, flush=True))
print("done", flush=True)
"""


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(args: dict, *, kill_at: tuple[int, float] | None = None) -> int:
    """Run the emitter. With ``kill_at=(k, delay)``, SIGKILL it ``delay`` seconds after its k-th
    progress line (a random point inside the work: tokenizing, or between and inside shard writes).
    Returns the number of progress lines seen."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(args)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = 0
    try:
        for line in proc.stdout:
            if line.startswith(b"done"):
                break
            lines += 1
            if kill_at is not None and lines == kill_at[0]:
                time.sleep(kill_at[1])
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.stdout.close()
        proc.wait(timeout=60)
    if kill_at is None:
        assert proc.returncode == 0
    return lines


@pytest.mark.slow
def test_sigkill_never_leaves_a_manifest_over_incomplete_data(tmp_path):
    files, tok, _ = small_inputs(tmp_path / "in", docs={"code": 150, "law": 100, "math": 120, "intl": 80})
    base = {"files": {d: [str(p) for p in v] for d, v in files.items()}, "tok": str(tok)}
    # Clean references for the two budgets, in their own folders.
    ref_a, ref_b = tmp_path / "ref_a" / "set", tmp_path / "ref_b" / "set"
    lines_a = _run({**base, "total": 60_000, "out": str(ref_a)})
    lines_b = _run({**base, "total": 90_000, "out": str(ref_b)})
    tree_a, tree_b = _tree(ref_a), _tree(ref_b)
    assert verify(ref_a) == [] and verify(ref_b) == []

    out = tmp_path / "target" / "set"
    rng = random.Random(1234)
    outcomes = []
    # First kills land on an empty target (no set yet) ...
    for _ in range(3):
        _run({**base, "total": 60_000, "out": str(out)}, kill_at=(rng.randint(1, lines_a), rng.uniform(0, 0.01)))
        if (out / "manifest.json").exists():
            assert verify(out) == [] and _tree(out) == tree_a
            outcomes.append("a")
        else:
            outcomes.append("none")
    _run({**base, "total": 60_000, "out": str(out)})
    assert _tree(out) == tree_a
    # ... then on a target holding a complete set that a new budget replaces.
    for _ in range(5):
        _run({**base, "total": 90_000, "out": str(out)}, kill_at=(rng.randint(1, lines_b), rng.uniform(0, 0.01)))
        if (out / "manifest.json").exists():
            assert verify(out) == []
            assert _tree(out) in (tree_a, tree_b)
            outcomes.append("a" if _tree(out) == tree_a else "b")
        else:
            assert not out.exists() or not any(out.iterdir()) or not (out / "manifest.json").exists()
            outcomes.append("none")
    _run({**base, "total": 90_000, "out": str(out)})
    assert _tree(out) == tree_b and verify(out) == []
    # No partial folders, old sets or temporary cache folders left behind: nothing duplicated.
    assert sorted(p.name for p in out.parent.iterdir()) == ["set", "set.cache"]
    assert not [p for p in (out.parent / "set.cache").iterdir() if p.name.startswith(".")]
    # The kills landed inside the work: some before any set existed, some while the old set stood.
    assert "none" in outcomes[:3] and "a" in outcomes[3:]
