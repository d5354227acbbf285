"""taskboard-migrate: the schema's migrations, with the app's database settings.

taskboard-migrate [upgrade]        to the head revision (the default)
taskboard-migrate downgrade REV    down to REV ("base" drops everything)
taskboard-migrate current          print the database's revision
taskboard-migrate check            exit 0 when at head, 1 otherwise
"""

from __future__ import annotations

import argparse
import sys

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from taskboard import migrations
from taskboard.config import ConfigError, Settings
from taskboard.db import make_engine


def _settings() -> Settings:
    # the same default instance directory (SQLite) as the app
    return Settings.from_env(instance_path=Flask("taskboard").instance_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taskboard-migrate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    up = sub.add_parser("upgrade", help="migrate up (to head by default)")
    up.add_argument("revision", nargs="?", default="head")
    down = sub.add_parser("downgrade", help="migrate down to a revision")
    down.add_argument("revision")
    sub.add_parser("current", help="print the current revision")
    sub.add_parser("check", help="exit 0 when the database is at head")
    args = parser.parse_args(argv)
    command = args.command or "upgrade"

    try:
        settings = _settings()
    except ConfigError as exc:
        print(f"taskboard-migrate: {exc}", file=sys.stderr)
        return 2
    if settings.database_source == "default":
        _ensure_dir(settings)
    engine = make_engine(settings, for_migrations=True)
    try:
        if command == "upgrade":
            migrations.upgrade(engine, getattr(args, "revision", "head"))
        elif command == "downgrade":
            migrations.downgrade(engine, args.revision)
        with engine.connect() as conn:
            current, head = migrations.revisions(conn)
    except SQLAlchemyError as exc:
        print(
            f"taskboard-migrate: database error: {type(exc.__cause__ or exc).__name__}: "
            f"{str(exc.__cause__ or exc).strip().splitlines()[0]}",
            file=sys.stderr,
        )
        return 3
    except Exception as exc:  # alembic's CommandError for unknown revisions, etc.
        print(f"taskboard-migrate: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if command == "check":
        if current == head:
            print(f"at head ({head})")
            return 0
        print(f"not at head: database at {current or 'nothing'}, code at {head}")
        return 1
    print(current or "base")
    return 0


def _ensure_dir(settings: Settings) -> None:
    import os

    path = settings.database_url.database
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
