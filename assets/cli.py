"""The `curamix` command: validate a spec, run the graph, open the UI, verify an output."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from pipeline.layout import Layout
from pipeline.spec import DATA_ROOT_ENV, SpecError, load_spec


def cmd_validate(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    files = sum(len(v) for v in spec.source_files.values())
    print(f"{spec.path.name}: ok — {len(spec.sources)} sources, {files} files, domains: {', '.join(spec.domains)}")
    print(f"data root: {spec.data_root}")
    print(f"spec hash: {spec.spec_hash}")
    _print_curation_profiles(spec)
    if args.sample:
        _print_filter_dry_run(spec, args.sample)
    return 0


def _print_curation_profiles(spec) -> None:
    """Which filter profile each domain gets, and whether the spec says so or the name was guessed."""
    print("curation profiles:")
    for domain in spec.domains:
        profile, why = spec.curation.profile_choice(domain)
        print(f"  {domain}: profile {profile} ({why})")


def _print_filter_dry_run(spec, sample: int) -> None:
    from pipeline.curation.dry_run import format_preview, preview_domain

    print(f"dry run of the quality filters on up to {sample} documents per domain "
          "(each rule judged alone; deduplication and pruning not included):")
    for domain in spec.domains:
        print("\n".join(format_preview(preview_domain(spec, domain, sample))))


def _print_profile_reference() -> None:
    """The profiles, as YAML comments after the defaults (``curation.domains.<d>.profile``)."""
    from pipeline.config.curation import PROFILE_OVERRIDES, PROFILES

    print("# curation profiles: set curation.domains.<domain>.profile (else guessed from the domain's name,")
    print("# which `curamix validate` shows); each changes the filter sections above as listed:")
    for name, description in PROFILES.items():
        print(f"#   {name}: {description}")
        for section, changes in PROFILE_OVERRIDES[name].items():
            print(f"#       {section}: {changes}")


def cmd_plan(args: argparse.Namespace) -> int:
    """Per asset: the work a spec implies and the expected time on this machine (a few seconds of calibration)."""
    from assets.plan import plan_spec

    text, _ = plan_spec(load_spec(args.spec, data_root=args.data_root), sample_bytes=args.sample_bytes)
    print(text)
    return 0


def cmd_defaults(args: argparse.Namespace) -> int:
    """Print every spec section with its defaults: the complete, current spec reference."""
    import yaml

    from pipeline.spec import default_sections

    print(yaml.safe_dump(default_sections(), sort_keys=False, width=100), end="")
    _print_profile_reference()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from assets.runner import run_all

    bar = tqdm(total=None, unit="step", desc="curamix", disable=args.quiet)

    running = {"step": ""}

    def on_step(step, done, total):
        bar.total = total
        bar.n = done  # steps finished so far; the postfix names the one now running
        names = ",".join(k.to_user_string() for k in step.asset_keys)
        running["step"] = names + (f" [{step.partition_key}]" if step.partition_key else "")
        bar.set_postfix_str(running["step"])

    def on_message(message: str):
        # Progress inside the running asset (proxy steps, documents scored): on the bar's line.
        bar.set_postfix_str(f"{running['step']}: {message.splitlines()[0][:100]}")

    results = run_all(args.spec, data_root=args.data_root, selection=args.select or None, on_step=on_step,
                      log_level="DEBUG" if args.verbose else "WARNING", stale_only=args.stale_only,
                      on_message=None if args.quiet or args.verbose else on_message)
    bar.n = bar.total or len(results)
    bar.close()
    spec = load_spec(args.spec, data_root=args.data_root)
    print(f"done: {len(results)} runs{' (stale only)' if args.stale_only else ''}; outputs under {spec.data_root}")
    _print_closing_counts(spec)
    manifest = Layout.at(spec.data_root).training_manifest
    if manifest.exists():
        print(f"training set: {manifest.parent} (check it with: curamix verify {manifest.parent})")
    return 0


def _print_closing_counts(spec) -> None:
    from pipeline.curation.closing import closing_lines
    from pipeline.store import DataRoot

    for line in closing_lines(DataRoot(spec.data_root), spec.domains):
        print(line)


def cmd_ui(args: argparse.Namespace) -> int:
    from assets.resources import SPEC_ENV
    from assets.dagster_home import dagster_home_for

    spec = load_spec(args.spec)
    env = dict(os.environ)
    env[SPEC_ENV] = str(spec.path)
    if args.data_root:
        env[DATA_ROOT_ENV] = args.data_root
    env["DAGSTER_HOME"] = str(dagster_home_for(spec.path, args.data_root))
    cmd = [sys.executable, "-m", "dagster", "dev", "-m", "assets.definitions", "-h", args.host, "-p", str(args.port)]
    print(f"Dagster UI for {spec.path.name} at http://{args.host}:{args.port} (DAGSTER_HOME={env['DAGSTER_HOME']})")
    return subprocess.call(cmd, env=env, cwd=str(Path(__file__).resolve().parent.parent))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="curamix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check a spec and list what it will read")
    p.add_argument("spec")
    p.add_argument("--sample", type=int, metavar="N", default=0,
                   help="dry run: read up to N documents per domain and show what each quality rule would drop")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("plan", help="the work each asset implies and its expected time on this machine")
    p.add_argument("spec")
    p.add_argument("--data-root", help="override the spec's data_root")
    p.add_argument("--sample-bytes", type=int, default=1_000_000,
                   help="bytes of each source's files read to profile the corpus (default 1 MB)")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("defaults", help="print every spec section with its default values")
    p.set_defaults(func=cmd_defaults)
    p = sub.add_parser("run", help="materialize the whole asset graph in-process")
    p.add_argument("spec")
    p.add_argument("--data-root", help="override the spec's data_root")
    p.add_argument("--select", action="append", help="asset key to materialize (with its upstream); repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--stale-only", action="store_true",
                   help="skip what is up to date (never materialized, new code or spec settings, new upstream data "
                        "or raw files re-run; the rest is left as it is)")
    p.add_argument("-v", "--verbose", action="store_true", help="show Dagster's event log on the terminal")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("ui", help="start the Dagster UI on loopback for a spec")
    p.add_argument("spec")
    p.add_argument("--data-root")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    for extra in _extra_commands():
        extra(sub)
    return parser


def _extra_commands():
    """Subcommands contributed by other rooms (e.g. `verify` from the emission stage)."""
    commands = []
    try:
        from pipeline.emission.cli import register as register_verify  # noqa: PLC0415
    except ImportError:
        pass
    else:
        commands.append(register_verify)
    return commands


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        return _disk_full_exit(exc, args)


def _disk_full_exit(exc: Exception, args: argparse.Namespace) -> int:
    """A full disk anywhere in a run: one line (path, bytes needed, bytes free) instead of a traceback."""
    from pipeline.diskspace import disk_full_message  # noqa: PLC0415

    message = disk_full_message(exc, fallback=_folder_of(args))
    if message is None:
        raise exc
    print(f"error: {message}", file=sys.stderr)
    return 1


def _folder_of(args: argparse.Namespace) -> Path | None:
    """The folder a command writes under: the spec's data root, or the folder it was given."""
    try:
        if getattr(args, "spec", None):
            return load_spec(args.spec, data_root=getattr(args, "data_root", None)).data_root
    except SpecError:
        return None
    return Path(args.dir) if getattr(args, "dir", None) else None


if __name__ == "__main__":
    sys.exit(main())
