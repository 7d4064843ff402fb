"""``taskexec apikey create|list|revoke`` and the development key of ``taskexec dev``.

``create`` prints the new key, and only the key, on stdout (``KEY=$(taskexec apikey create
…)``); it is shown once and never stored. Operators' actions are recorded with the actor
``{"id": "<os user>@<host>", "kind": "operator"}``.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import re
import socket
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from api.settings import Settings
from commands.apikeys import ApiKeyRecord, ApiKeyService, is_key_id
from commands.errors import CommandError, Conflict
from domain.errors import InvalidValue
from domain.permissions import ALL_PERMISSIONS, unknown_permissions
from domain.tenancy import check_tenant
from domain.values import Actor

DEV_KEY_NAME = "taskexec dev"
DEV_ACTOR = Actor(id="taskexec dev", kind="system")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SHORT = re.compile(r"(\d+)([smhdw])")
_ISO_DURATION = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")


class UsageError(ValueError):
    """A command-line value cannot be used (exit status 2)."""


def add_commands(commands: Any) -> None:
    """Register ``apikey`` on the ``taskexec`` sub-command parser."""
    apikey = commands.add_parser("apikey", help="API keys for service accounts")
    sub = apikey.add_subparsers(dest="apikey_command", required=True)

    create = sub.add_parser("create", help="create a key; prints only the key, once")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument(
        "--permissions",
        required=True,
        help=f"comma-separated ({', '.join(sorted(ALL_PERMISSIONS))}), or 'all'",
    )
    create.add_argument(
        "--expires",
        default=None,
        help="ISO 8601 time (2027-01-31T00:00:00Z, 2027-01-31) or duration (90d, 12h, P30D)",
    )
    create.add_argument(
        "--tenant",
        default=None,
        help="the key sees only this tenant's tasks, and its tasks are this tenant's "
        "(default: no tenant, every task)",
    )
    create.set_defaults(func=cmd_create)

    listing = sub.add_parser("list", help="every key: id, name, status, permissions")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=cmd_list)

    revoke = sub.add_parser("revoke", help="revoke a key by its id (the part after tex_)")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=cmd_revoke)


@contextlib.contextmanager
def key_service(settings: Settings) -> Iterator[ApiKeyService]:
    """The API keys of the configured event store, for one command."""
    from api.bootstrap import event_store

    with event_store(settings) as service:
        yield ApiKeyService(service)


def operator() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(id=f"{user}@{socket.gethostname()}", kind="operator")


def parse_permissions(text: str) -> list[str]:
    if text.strip().lower() == "all":
        return sorted(ALL_PERMISSIONS)
    names = sorted({name.strip() for name in text.split(",") if name.strip()})
    if not names:
        raise UsageError("--permissions: name at least one permission")
    unknown = unknown_permissions(names)
    if unknown:
        raise UsageError(
            f"--permissions: unknown {', '.join(unknown)} "
            f"(known: {', '.join(sorted(ALL_PERMISSIONS))})"
        )
    return names


def parse_tenant(text: str) -> str:
    """A tenant's name (domain/tenancy.py), else UsageError saying what one is."""
    try:
        return check_tenant(text)
    except InvalidValue as exc:
        raise UsageError(f"--tenant {text!r}: {exc}") from None


def parse_expiry(text: str, now: datetime) -> datetime:
    """An absolute ISO 8601 time or date (UTC if no zone), or a duration from ``now``."""
    text = text.strip()
    short = _SHORT.fullmatch(text)
    iso = _ISO_DURATION.fullmatch(text.upper()) if text.upper().startswith("P") else None
    if short:
        moment = now + timedelta(**{_UNITS[short.group(2)]: int(short.group(1))})
    elif iso and any(iso.groups()):
        weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in iso.groups())
        delta = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
        moment = now + delta
    else:
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
            else:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise UsageError(
                f"--expires {text!r}: use an ISO 8601 time or date, or a duration "
                "such as 90d, 12h, 30m, 2w, P30D"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    if moment <= now:
        raise UsageError(f"--expires {text!r} is not in the future")
    return moment.astimezone(UTC)


def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    try:
        permissions = parse_permissions(args.permissions)
        expires = parse_expiry(args.expires, datetime.now(UTC)) if args.expires else None
        tenant = parse_tenant(args.tenant) if args.tenant is not None else None
    except UsageError as exc:
        print(f"taskexec apikey create: {exc}", file=sys.stderr)
        return 2
    with key_service(settings) as keys:
        try:
            key, record = keys.create(
                name=args.name,
                permissions=permissions,
                actor=operator(),
                expires_at=expires,
                tenant=tenant,
            )
        except CommandError as exc:
            print(f"taskexec apikey create: {exc.message}", file=sys.stderr)
            return 2
    print(key, flush=True)
    print(
        f"created key {record.key_id} ({record.name}): {', '.join(sorted(record.permissions))}"
        + (f"; expires {_time(record.expires_at)}" if record.expires_at else "")
        + (f"; tenant {record.tenant}" if record.tenant else ""),
        file=sys.stderr,
    )
    return 0


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    with key_service(settings) as keys:
        records = keys.list()
    now = datetime.now(UTC)
    if args.json:
        for record in records:
            print(json.dumps(_as_json(record, now), sort_keys=True))
        return 0
    rows = [
        (
            r.key_id,
            r.name,
            r.status(now),
            _time(r.created_at),
            _time(r.expires_at) if r.expires_at else "never",
            r.created_by.get("id", ""),
            r.tenant or "-",
            ",".join(sorted(r.permissions)),
        )
        for r in records
    ]
    header = (
        "KEY ID",
        "NAME",
        "STATUS",
        "CREATED",
        "EXPIRES",
        "CREATED BY",
        "TENANT",
        "PERMISSIONS",
    )
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    key_id = args.key_id.removeprefix("tex_").split("_")[0]
    if not is_key_id(key_id):
        print(f"taskexec apikey revoke: {args.key_id!r} is not a key id", file=sys.stderr)
        return 2
    with key_service(settings) as keys:
        try:
            record = keys.revoke(key_id, operator())
        except Conflict:
            print(f"key {key_id} was revoked already", file=sys.stderr)
            return 0
        except CommandError as exc:
            print(f"taskexec apikey revoke: {exc.message}", file=sys.stderr)
            return 1
    print(f"revoked key {record.key_id} ({record.name})")
    return 0


def ensure_dev_key(settings: Settings) -> str:
    """The development key (every permission), kept in ``settings.dev_api_key_file``.

    Reused across restarts while it still works and still holds every permission;
    otherwise (new database, revoked, new permissions) it is replaced.
    """
    path = settings.dev_api_key_file
    try:
        remembered: str | None = path.read_text().strip()
    except OSError:
        remembered = None
    with key_service(settings) as keys:
        if remembered:
            record = keys.check(remembered)
            if record is not None and record.status(datetime.now(UTC)) == "active":
                if record.permissions >= ALL_PERMISSIONS:
                    return remembered
                keys.revoke(record.key_id, DEV_ACTOR)  # outdated: fewer permissions than now
        key, _ = keys.create(
            name=DEV_KEY_NAME, permissions=sorted(ALL_PERMISSIONS), actor=DEV_ACTOR
        )
    _write_private(path, key)
    return key


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".dev-api-key.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _time(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_json(record: ApiKeyRecord, now: datetime) -> dict[str, Any]:
    return {
        "keyId": record.key_id,
        "name": record.name,
        "status": record.status(now),
        "permissions": sorted(record.permissions),
        "createdAt": _time(record.created_at),
        "createdBy": dict(record.created_by),
        "expiresAt": _time(record.expires_at) or None,
        "revokedAt": _time(record.revoked_at) or None,
        "revokedBy": dict(record.revoked_by) if record.revoked_by else None,
        "tenant": record.tenant,
    }
