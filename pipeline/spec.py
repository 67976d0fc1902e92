"""The declarative spec: one YAML file -> a typed, validated ``Spec``.

Relative paths in the spec are relative to the spec file. Every validation error names the spec
file and the key path, e.g. ``spec.yaml: sources[3].path: no file matches 'raw/*.jsonl'``.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.config.curation import CurationConfig, check_domains
from pipeline.config.execution import ExecutionConfig
from pipeline.config.mixing import MixingConfig
from pipeline.config.operations import OperationsConfig
from pipeline.config.output import OutputConfig
from pipeline.config.proxies import ProxiesConfig, TokenizerConfig
from pipeline.config.pruning import PruningConfig
from pipeline.config.staging import SourceConfig, SourceFormat, StagingConfig, reads_as_text
from pipeline.config.typed import ConfigError, build, to_plain

DATA_ROOT_ENV = "CURAMIX_DATA_ROOT"
# Settings that say where data is written or when curamix runs, not what the data is: not in spec_hash.
SPEC_HASH_EXCLUDES = ("data_root", "output.path", "operations", "execution")


class SpecError(ValueError):
    """A spec that cannot be used; the message names the file and the key path."""


@dataclass(frozen=True)
class SpecBody:
    """The YAML document as written (paths not yet resolved)."""

    name: str
    sources: list[SourceConfig]
    seed: int = 0
    data_root: str = "data"
    staging: StagingConfig = field(default_factory=StagingConfig)
    curation: CurationConfig = field(default_factory=CurationConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    proxies: ProxiesConfig = field(default_factory=ProxiesConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    operations: OperationsConfig = field(default_factory=OperationsConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)


@dataclass(frozen=True)
class Spec:
    """A validated spec with resolved paths. Stage code reads its own section from here."""

    path: Path
    body: SpecBody
    data_root: Path
    source_files: dict[str, tuple[Path, ...]]

    def __getattr__(self, name: str):
        # Sections and scalar settings read straight through: spec.curation, spec.seed, ...
        if name == "body":  # not set yet (unpickling in a worker): do not recurse
            raise AttributeError(name)
        return getattr(self.body, name)

    @property
    def sources(self) -> list[SourceConfig]:
        return self.body.sources

    @property
    def domains(self) -> list[str]:
        """Domains in first-seen order of the sources."""
        return list(dict.fromkeys(s.domain for s in self.body.sources))

    def sources_for(self, domain: str) -> list[SourceConfig]:
        return [s for s in self.body.sources if s.domain == domain]

    def seed_for(self, stage: str) -> int:
        """A 63-bit seed derived from the spec's seed and a stage name (stable across runs)."""
        digest = hashlib.sha256(f"{self.body.seed}:{stage}".encode()).digest()
        return int.from_bytes(digest[:8], "little") >> 1

    @property
    def spec_hash(self) -> str:
        """sha256 of the canonical JSON of what in the validated spec decides the data (paths as written).

        Left out: where the data is written, when curamix runs and on which engine (``SPEC_HASH_EXCLUDES``), so the
        same spec run into two data roots, on two machines, under any engine, has one hash, as its byte-identical
        shards do."""
        plain = to_plain(self.body)
        for key in SPEC_HASH_EXCLUDES:
            *parents, leaf = key.split(".")
            section = plain
            for name in parents:
                section = section.get(name) or {}
            section.pop(leaf, None)
        canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_dict(self) -> dict:
        return to_plain(self.body)


def detect_format(path: Path) -> SourceFormat | None:
    name = path.name.lower()
    if path.is_dir() or name.endswith((".txt", ".md")):
        return "text"
    for suffix, fmt in ((".jsonl.gz", "jsonl.gz"), (".jsonl.zst", "jsonl.zst"), (".jsonl", "jsonl"),
                        (".parquet", "parquet")):
        if name.endswith(suffix):
            return fmt  # type: ignore[return-value]
    return None


def _expand(base: Path, pattern: str) -> list[Path]:
    full = Path(pattern) if os.path.isabs(pattern) else base / pattern
    if glob.has_magic(str(full)):
        return sorted(Path(p) for p in glob.glob(str(full), recursive=True))
    return [full] if full.exists() else []


def source_format(source: SourceConfig, path: Path) -> SourceFormat | None:
    """The format a file of ``source`` is read in: the spec's, its ``extensions`` (text), else its name's."""
    if source.format:
        return source.format
    if reads_as_text(source, path):
        return "text"
    return detect_format(path)


def _endings_held(folders: list[Path]) -> str:
    """The commonest file endings in ``folders`` (for an error that says what is there instead)."""
    counts: dict[str, int] = {}
    for folder in folders:
        for p in folder.rglob("*"):
            if p.is_file():
                counts[p.suffix.lower() or "(none)"] = counts.get(p.suffix.lower() or "(none)", 0) + 1
    common = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return ", ".join(f"{ext} ({n})" for ext, n in common) or "no files at all"


def _resolve_source(base: Path, index: int, source: SourceConfig) -> tuple[Path, ...]:
    where = f"sources[{index}].path"
    matches = _expand(base, source.path)
    if not matches:
        raise ConfigError(where, f"no file matches {source.path!r}")
    files: list[Path] = []
    for match in matches:
        if match.is_dir():
            files.extend(sorted(p for p in match.rglob("*") if p.is_file() and reads_as_text(source, p)))
            continue
        if source_format(source, match) is None:
            raise ConfigError(
                where,
                f"cannot tell the format of {match.name!r}: expected .jsonl, .jsonl.gz, .jsonl.zst, .parquet, "
                f"a folder or a text file ending in {', '.join(source.extensions)}; set sources[{index}].format "
                f"or sources[{index}].extensions",
            )
        files.append(match)
    if not files:
        raise ConfigError(
            where,
            f"{source.path!r} holds no file ending in {', '.join(source.extensions)} (the folder's extension filter, "
            f"sources[{index}].extensions); it holds {_endings_held([m for m in matches if m.is_dir()])}",
        )
    return tuple(files)


def spec_from_dict(data: dict, *, path: Path, data_root: str | os.PathLike | None = None) -> Spec:
    """Validate ``data`` as if read from ``path``; relative paths resolve against its folder.

    The data root is, first found: ``data_root``, ``$CURAMIX_DATA_ROOT`` (both relative to the working
    directory), the spec's ``data_root`` (relative to the spec file)."""
    path = Path(path).resolve()
    label = path.name
    try:
        if not isinstance(data, dict):
            raise ConfigError("", "the spec must be a YAML mapping")
        body: SpecBody = build(SpecBody, data)
        if not body.sources:
            raise ConfigError("sources", "at least one source is required")
        seen: dict[str, int] = {}
        for i, source in enumerate(body.sources):
            if source.name in seen:
                raise ConfigError(f"sources[{i}].name", f"{source.name!r} is already used by sources[{seen[source.name]}]")
            seen[source.name] = i
        check_domains(body.curation, list(dict.fromkeys(s.domain for s in body.sources)))
        files = {s.name: _resolve_source(path.parent, i, s) for i, s in enumerate(body.sources)}
    except ConfigError as exc:
        raise SpecError(f"{label}: {exc}") from None
    override = data_root or os.environ.get(DATA_ROOT_ENV)
    root = Path(override) if override else path.parent / body.data_root
    return Spec(path=path, body=body, data_root=root.resolve(), source_files=files)


def load_spec(path: str | os.PathLike, *, data_root: str | os.PathLike | None = None) -> Spec:
    """Read and validate a spec file. Raises ``SpecError`` naming the file and key path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{path.name}:{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return spec_from_dict(data, path=path, data_root=data_root)


def default_sections() -> dict:
    """Every optional section of the spec with its defaults (``curamix defaults`` prints this)."""
    sections = {}
    for f in dataclasses.fields(SpecBody):
        if f.default_factory is not dataclasses.MISSING:
            sections[f.name] = to_plain(f.default_factory())
        elif f.default is not dataclasses.MISSING:
            sections[f.name] = f.default
    return sections


def replace_section(spec: Spec, **sections) -> Spec:
    """A copy of ``spec`` with some sections replaced (used by launchpad overrides and tests)."""
    return dataclasses.replace(spec, body=dataclasses.replace(spec.body, **sections))
