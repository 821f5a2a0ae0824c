"""``python -m trustmess``: serve (default), migrate, createuser."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, NoReturn

from trustmess import __version__
from trustmess.cluster.supervisor import check_workers, supervise
from trustmess.logs import configure_logging
from trustmess.settings import (
    Settings,
    SettingsError,
    describe_default,
    env_name,
    flag_name,
    resolve_jwt_secret,
    setting_fields,
)

log = logging.getLogger("trustmess")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trustmess",
        description="TrustMess messaging server. Every option can also be set by the "
        "TRUSTMESS_<OPTION> environment variable; flags win.",
    )
    parser.add_argument("--version", action="version", version=f"trustmess {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the server (the default)")
    serve.add_argument("--no-migrate", action="store_true", help="do not run pending migrations")
    # Set by the --workers supervisor on its children: serve, do not supervise again.
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("migrate", help="apply pending database migrations and exit")
    create = sub.add_parser("createuser", help="create a user account")
    create.add_argument("username")
    create.add_argument("--admin", action="store_true", help="make the user an administrator")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    for command in (parser, serve, sub.choices["migrate"], create):
        _add_setting_flags(command)
    return parser


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "settings", "each also from its environment variable (shown last); a flag wins"
    )
    for f in setting_fields():
        shown = (
            f"{f.metadata['doc']} [{f.metadata['values']}; default {describe_default(f.default)}]"
        )
        group.add_argument(
            flag_name(f.name),
            dest="setting_" + f.name,
            metavar="VALUE",
            default=argparse.SUPPRESS,
            # argparse formats help with %: a literal one must be doubled.
            help=f"{shown} ${env_name(f.name)}".replace("%", "%%"),
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {
        name.removeprefix("setting_"): value
        for name, value in vars(args).items()
        if name.startswith("setting_")
    }
    return Settings.from_env(overrides=overrides)


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """Yield the database URL, starting (and finally stopping) the embedded server if needed."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    from trustmess.runtime.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(settings.data_dir / "pg")
    log.info("starting embedded PostgreSQL, data in %s", embedded.pgdata)
    try:
        dsn = embedded.start()
        if embedded.attached:
            log.info("embedded PostgreSQL already running (pid %s): using it", embedded.pid)
        else:
            log.info("embedded PostgreSQL ready (pid %s)", embedded.pid)
        yield dsn
    finally:
        still_used_by = embedded.stop()
        if still_used_by:
            pids = ", ".join(map(str, still_used_by))
            log.info("embedded PostgreSQL left running (still used by pid %s)", pids)
        else:
            log.info("embedded PostgreSQL stopped")


def _exit_on_sigterm(signum: int, frame: Any) -> NoReturn:
    raise SystemExit(128 + signum)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "serve"
    try:
        settings = settings_from_args(args)
        if command == "serve":
            check_workers(settings)
            settings = resolve_jwt_secret(settings)
    except SettingsError as exc:
        print(f"trustmess: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    # Until the server's own handlers are installed, SIGTERM must still unwind the `with`
    # blocks so that an embedded PostgreSQL is stopped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with contextlib.ExitStack() as stack:
            if command == "serve" and settings.embedded and not getattr(args, "worker", False):
                from trustmess.runtime.datadir import data_dir_lock

                stack.enter_context(data_dir_lock(settings.data_dir))
            dsn = stack.enter_context(database_url(settings))
            return _run_command(command, args, settings, dsn)
    except KeyboardInterrupt:
        return 130
    except SettingsError as exc:
        print(f"trustmess: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        code = _known_failure(exc)
        if code is None:
            raise
        print(f"trustmess: {exc}", file=sys.stderr)
        return code


# Exit codes besides 0 (done), 1 (failed: see the log) and 2 (a bad setting or argument).
EXIT_DATABASE_UNAVAILABLE = 3
EXIT_DATA_DIR_IN_USE = 4


def _known_failure(exc: Exception) -> int | None:
    """The exit code for a failure that deserves one line rather than a traceback."""
    from trustmess.runtime.datadir import DataDirInUse
    from trustmess.runtime.pool import DatabaseUnavailable

    if isinstance(exc, DatabaseUnavailable):
        return EXIT_DATABASE_UNAVAILABLE
    if isinstance(exc, DataDirInUse):
        return EXIT_DATA_DIR_IN_USE
    return None


def _run_command(command: str, args: argparse.Namespace, settings: Settings, dsn: str) -> int:
    """``command`` against the database at ``dsn`` (reachable: checked first)."""
    from trustmess.runtime.pool import check_database

    asyncio.run(check_database(dsn))
    if command == "migrate" or (command == "serve" and not getattr(args, "no_migrate", False)):
        from trustmess.runtime.migrate import upgrade

        upgrade(dsn)
        log.info("database schema is up to date")
    if command == "serve" and settings.workers > 1 and not getattr(args, "worker", False):
        return supervise(settings.replace(database_url=dsn))
    if command == "serve":
        from trustmess.runtime.server import serve

        _run(serve(settings.replace(database_url=dsn)))
    elif command == "createuser":
        from trustmess.runtime.createuser import create_user_command

        return create_user_command(settings.replace(database_url=dsn), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
