"""The `collector` command: run, check, db (upgrade, revision, downgrade, backup, copy),
rebuild, demo, and each adapter's commissioning tool.

Every command answers bad input with a one-line error and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from collector.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    ConfigError,
    Problem,
    deprecated_keys,
    load_config,
    resolve_config_path,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("collector")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", default=None,
        help=f"config file (default: ${CONFIG_ENV}, then {DEFAULT_CONFIG})")


class _Version(argparse.Action):
    """`collector --version`: the installed package's version, looked up only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kw: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("retrofit-collector")
        except PackageNotFoundError:
            found = "(not installed)"
        print(f"{parser.prog} {found}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collector",
        description="Retrofit data collector: Modbus, OPC UA and MQTT into one SQL ledger.")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the collector's version and exit")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"], help="log detail")
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="text for people, json for log collectors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run every source, the ledger writer and the API")
    _add_config(run)
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate the config without touching devices")
    _add_config(check)
    check.add_argument("--explain", action="store_true",
                       help="also say, per tag, what will be read and where it is written")
    check.set_defaults(func=cmd_check)

    db = sub.add_parser("db", help="ledger database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    db_sub.required = True
    upgrade = db_sub.add_parser("upgrade", help="apply pending schema migrations")
    _add_config(upgrade)
    upgrade.set_defaults(func=cmd_db_upgrade)
    backup = db_sub.add_parser(
        "backup", help="copy a SQLite ledger (and the spool) while the collector runs")
    _add_config(backup)
    backup.add_argument("--to", required=True, metavar="PATH",
                        help="the copy's file, or a folder to put it in (replaced if present)")
    backup.add_argument("--spool", action="store_true",
                        help="copy the spool too (beside the ledger's copy: NAME-spool.db)")
    backup.set_defaults(func=cmd_db_backup)
    revision = db_sub.add_parser(
        "revision", help="show the ledger's schema revision and this collector's newest")
    _add_config(revision)
    revision.set_defaults(func=cmd_db_revision)
    downgrade = db_sub.add_parser(
        "downgrade", help="take the ledger's schema back to an older revision (before "
        "installing an older collector)")
    _add_config(downgrade)
    downgrade.add_argument("--to", required=True, metavar="REVISION",
                           help="the revision the older collector expects, e.g. 0005")
    downgrade.set_defaults(func=cmd_db_downgrade)
    copy = db_sub.add_parser(
        "copy", help="copy a whole ledger into another database (SQLite <-> PostgreSQL)",
        description="Copy every ledger table from --from into --to, creating or migrating the "
        "target's schema first; run it again after an interruption and it continues. Stop the "
        "collector that writes to the source first.")
    copy.add_argument("--from", dest="source", required=True, metavar="URL",
                      help="the ledger to copy: sqlite:///path/ledger.db or postgresql://user@host/db")
    copy.add_argument("--to", dest="target", required=True, metavar="URL",
                      help="where to copy it (created or migrated; must be empty or this copy)")
    copy.add_argument("--schema", default=None,
                      help="the target's PostgreSQL schema (as ledger.schema; created if missing)")
    copy.add_argument("--from-schema", default=None, metavar="SCHEMA",
                      help="the source's PostgreSQL schema")
    copy.add_argument("--batch", type=int, default=20_000, metavar="ROWS",
                      help="rows per committed batch (default 20000)")
    copy.set_defaults(func=cmd_db_copy)

    rebuild = sub.add_parser(
        "rebuild", help="derive a machine's states, counts and downtimes again from its readings")
    _add_config(rebuild)
    rebuild.add_argument("--machine", required=True, help="the machine's id")
    rebuild.add_argument("--start", required=True,
                         help="RFC 3339 (2026-11-22T06:00:00+08:00) or epoch milliseconds")
    rebuild.add_argument("--end", default=None, help="as --start; default now")
    rebuild.set_defaults(func=cmd_rebuild)

    demo = sub.add_parser("demo", help="simulated machines + a collector + the status page")
    demo.add_argument("--data", default="demo-data", help="folder for the demo ledger")
    demo.add_argument("--port", type=int, default=8080, help="API and status page port")
    demo.add_argument("--seconds", type=float, default=None, help="stop after this long")
    demo.set_defaults(func=cmd_demo)

    from adapters.base import registry

    for spec in registry().values():
        if spec.add_cli is not None:
            spec.add_cli(sub)
    return parser


def setup_logging(level: str, fmt: str) -> None:
    from collector.logs import configure

    configure(level, fmt)


def cmd_check(args: argparse.Namespace) -> int:
    path = resolve_config_path(args.config)
    try:
        config = load_config(path)
    except ConfigError as exc:
        _report(path, exc)
        return EXIT_CONFIG
    if not config.machines:
        _report(path, ConfigError([NO_MACHINES]))
        return EXIT_CONFIG
    for note in deprecated_keys(config):  # accepted, but say what to write today
        print(f"{path}: {note}", file=sys.stderr)
    if getattr(args, "explain", False):
        from adapters.base import registry
        from collector.explain import explain

        explainers = {name: spec.explain for name, spec in registry().items()}
        for line in explain(config, path, explainers):
            print(line)
        print()
    print(summary(*config.counts()))
    return EXIT_OK


NO_MACHINES = Problem(
    "", "no machines: a config needs `machines:` with at least one machine (`id:`), "
    "its sources (`protocol:` and where to reach the device) and their tags; start from "
    "config/collector.yaml or one of the other examples in config/")


def summary(machines: int, sources: int, tags: int) -> str:
    """`2 machines, 1 source, 5 tags`: what a config holds, in one line."""
    return ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in
                     ((machines, "machine"), (sources, "source"), (tags, "tag")))


def _load_or_report(args: argparse.Namespace) -> object | None:
    path = resolve_config_path(args.config)
    try:
        return load_config(path)
    except ConfigError as exc:
        _report(path, exc)
        return None


def _report(path: object, exc: ConfigError) -> None:
    for problem in exc.problems:  # every line names the file, as compilers do
        text = str(problem)
        named = problem.file is not None or repr(str(path)) in text
        print(text if named else f"{path}: {text}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from api.server import ApiServer  # the command line wires the API to the runtime
    from collector.runtime import Runtime, run_service

    config = _load_or_report(args)
    if config is None:
        return EXIT_CONFIG
    if not config.machines:  # type: ignore[attr-defined]
        _report(resolve_config_path(args.config), ConfigError([NO_MACHINES]))
        return EXIT_CONFIG
    try:
        run_service(Runtime(config, api=ApiServer).run_until_signalled())  # type: ignore[arg-type]
    except (OSError, ValueError) as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from collector.ledger import Ledger, LedgerSchemaMissing

    config = _load_or_report(args)
    if config is None:
        return EXIT_CONFIG

    async def upgrade() -> str | None:
        from collector.ledger.engine import current_revision

        ledger = Ledger(config.ledger.url, schema=config.ledger.db_schema)  # type: ignore[attr-defined]
        try:
            await ledger.open()
            return await current_revision(ledger.engine)
        finally:
            await ledger.close()

    try:
        revision = asyncio.run(upgrade())
    except LedgerSchemaMissing as exc:
        print(f"collector: cannot upgrade the ledger: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        print(f"collector: cannot upgrade the ledger: {type(exc).__name__}: {exc}".splitlines()[0],
              file=sys.stderr)
        return EXIT_ERROR
    print(f"ledger schema at revision {revision}")
    return EXIT_OK


def cmd_db_backup(args: argparse.Namespace) -> int:
    from collector.ledger.backup import BackupError, backup_file, need_file, sqlite_file, targets

    config = _load_or_report(args)
    if config is None:
        return EXIT_CONFIG
    try:
        ledger = sqlite_file(config.ledger.url, config.ledger.db_schema)  # type: ignore[attr-defined]
        spool = config.spool_path() if args.spool else None  # type: ignore[attr-defined]
        to_ledger, to_spool = targets(args.to, ledger, spool)
        if spool is not None:  # both there, or no copy at all
            need_file(spool, "spool.path")
        copies = [backup_file(ledger, to_ledger)]
        if spool is not None and to_spool is not None:
            copies.append(backup_file(spool, to_spool, "spool.path"))
    except BackupError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for copy in copies:
        print(f"{copy.source} -> {copy.target} ({copy.size} bytes)")
    return EXIT_OK


def _ledger_engine(config: Any) -> AsyncEngine:
    from collector.ledger.engine import create_engine

    return create_engine(config.ledger.url, schema=config.ledger.db_schema)


def cmd_db_revision(args: argparse.Namespace) -> int:
    from collector.ledger.engine import current_revision
    from collector.ledger.revisions import head

    config = _load_or_report(args)
    if config is None:
        return EXIT_CONFIG

    async def show() -> str | None:
        engine = _ledger_engine(config)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    try:
        revision = asyncio.run(show())
    except Exception as exc:
        print(f"collector: cannot read the ledger: {type(exc).__name__}: {exc}".splitlines()[0],
              file=sys.stderr)
        return EXIT_ERROR
    print(f"ledger schema at revision {revision or 'none (an empty database)'}; "
          f"this collector's newest is {head()}")
    return EXIT_OK


def cmd_db_downgrade(args: argparse.Namespace) -> int:
    from collector.ledger.revisions import RevisionError, downgrade

    config = _load_or_report(args)
    if config is None:
        return EXIT_CONFIG

    async def back() -> tuple[str | None, str | None]:
        engine = _ledger_engine(config)
        try:
            return await downgrade(engine, args.to)
        finally:
            await engine.dispose()

    try:
        before, after = asyncio.run(back())
    except RevisionError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        print(f"collector: cannot downgrade the ledger: {type(exc).__name__}: {exc}"
              .splitlines()[0], file=sys.stderr)
        return EXIT_ERROR
    print(f"ledger schema at revision {after} (was {before})")
    return EXIT_OK


def cmd_db_copy(args: argparse.Namespace) -> int:
    from collector.ledger.copy import CopyError, copy_ledger

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        result = asyncio.run(copy_ledger(
            args.source, args.target, schema=args.schema, source_schema=args.from_schema,
            batch=args.batch, progress=progress))
    except CopyError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("collector: copy interrupted: run the same command again to continue",
              file=sys.stderr)
        return EXIT_ERROR
    for line in result.report():
        print(line)
    return EXIT_OK


def cmd_rebuild(args: argparse.Namespace) -> int:
    from collector.derive.rebuild import RebuildError, parse_when, rebuild
    from collector.model import now_us

    config = _load_or_report(args)
    if config is None:
        return EXIT_CONFIG
    try:
        start = parse_when("start", args.start)
        end = parse_when("end", args.end) if args.end else now_us()
        result = asyncio.run(rebuild(config, args.machine, start, end))  # type: ignore[arg-type]
    except RebuildError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:
        print(f"collector: cannot rebuild: {type(exc).__name__}: {exc}".splitlines()[0],
              file=sys.stderr)
        return EXIT_ERROR
    print(result.summary())
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from collector.demo import run_demo
    except ImportError:
        print("collector: the demo is not available in this build", file=sys.stderr)
        return EXIT_ERROR
    return run_demo(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:  # the promise: a one-line error, never a traceback
        log.debug("unexpected error", exc_info=True)
        print(f"collector: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
