"""Pure logic of authentication: credential parsing, the API-key cache, key checks,
token claims with a fixed clock (no I/O: fakes for lookups and clocks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from api.security.auth import ApiKeyCache, Authenticator, Credentials, credentials_from
from api.security.principal import AuthFailure, WouldBlock
from api.security.tokens import TokenVerifier
from commands.apikeys import ApiKeyRecord, generate_key, hash_key, parse_key_id
from tests.fakes import FakeClock

SECRET = "x" * 32
NOW = 2_000_000_000
AT = datetime.fromtimestamp(NOW, UTC)


def record(key: str, **overrides: Any) -> ApiKeyRecord:
    fields: dict[str, Any] = {
        "key_id": key.split("_")[1],
        "name": "svc",
        "secret_hash": hash_key(key),
        "permissions": frozenset({"tasks:read"}),
        "created_at": AT - timedelta(days=1),
        "created_by": {"id": "op", "kind": "operator"},
        "expires_at": None,
        "revoked_at": None,
        "revoked_by": None,
    }
    fields.update(overrides)
    return ApiKeyRecord(**fields)


# -- credentials ----------------------------------------------------------------------------


def test_credentials_are_read_from_either_header() -> None:
    assert credentials_from([(b"authorization", b"Bearer abc")]) == Credentials("Bearer", "abc")
    assert credentials_from([(b"authorization", b"bearer  abc ")]) == Credentials("Bearer", "abc")
    assert credentials_from([(b"x-api-key", b"tex_1")]) == Credentials("ApiKey", "tex_1")
    assert credentials_from([(b"accept", b"*/*")]) is None


@pytest.mark.parametrize(
    "headers",
    [
        [(b"authorization", b"Basic abc")],
        [(b"authorization", b"Bearer")],
        [(b"x-api-key", b"")],
        [(b"x-api-key", b"\xff")],
        [(b"x-api-key", b"a" * 20_000)],
        [(b"x-api-key", b"tex_1"), (b"x-api-key", b"tex_2")],
        [(b"authorization", b"Bearer a"), (b"x-api-key", b"tex_1")],
    ],
)
def test_unusable_credentials_are_refused(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(AuthFailure) as caught:
        credentials_from(headers)
    assert caught.value.error == "invalid_request"


# -- API keys -------------------------------------------------------------------------------


def test_key_format() -> None:
    key_id, key = generate_key()
    assert key.startswith("tex_") and parse_key_id(key) == key_id
    assert len(key) == 4 + 16 + 1 + 52
    assert generate_key() != generate_key()
    for bad in ("tex_", key + "x", key.upper(), key.replace("tex_", "tux_"), " " + key):
        assert parse_key_id(bad) is None


def test_the_cache_serves_within_its_ttl_and_looks_up_again_after() -> None:
    clock = FakeClock()
    lookups: list[str] = []
    _, key = generate_key()

    def lookup(key_id: str) -> ApiKeyRecord | None:
        lookups.append(key_id)
        return record(key)

    cache = ApiKeyCache(lookup, ttl=5, clock=clock)
    key_id = key.split("_")[1]
    with pytest.raises(WouldBlock):
        cache.get(key_id, blocking=False)
    assert cache.get(key_id, blocking=True) is not None
    clock.now = 4.9
    assert cache.get(key_id, blocking=False) is not None
    clock.now = 5.0
    with pytest.raises(WouldBlock):
        cache.get(key_id, blocking=False)
    assert lookups == [key_id]


def test_the_cache_remembers_absent_keys_and_stays_bounded() -> None:
    clock = FakeClock()
    lookups: list[str] = []

    def lookup(key_id: str) -> ApiKeyRecord | None:
        lookups.append(key_id)
        return None

    cache = ApiKeyCache(lookup, ttl=5, max_entries=3, clock=clock)
    for n in range(5):
        assert cache.get(f"{n:016x}", blocking=True) is None
    assert cache.get(f"{4:016x}", blocking=False) is None  # cached negative
    with pytest.raises(WouldBlock):
        cache.get(f"{0:016x}", blocking=False)  # evicted: oldest first
    assert len(lookups) == 5


def test_the_cache_keeps_what_is_used_least_recently_used_out_first() -> None:
    lookups: list[str] = []

    def lookup(key_id: str) -> ApiKeyRecord | None:
        lookups.append(key_id)
        return None

    cache = ApiKeyCache(lookup, ttl=5, max_entries=2, clock=FakeClock())
    cache.get("a", blocking=True)
    cache.get("b", blocking=True)
    cache.get("a", blocking=False)  # a hit: "a" is now the most recently used
    cache.get("c", blocking=True)  # full: "b" goes, not "a"
    assert cache.get("a", blocking=False) is None
    with pytest.raises(WouldBlock):
        cache.get("b", blocking=False)
    assert lookups == ["a", "b", "c"]


def test_concurrent_lookups_of_one_key_id_share_one_load() -> None:
    import threading
    import time

    _, key = generate_key()
    release = threading.Event()
    lookups: list[str] = []

    def lookup(key_id: str) -> ApiKeyRecord | None:
        lookups.append(key_id)
        release.wait(5)
        return record(key)

    cache = ApiKeyCache(lookup, ttl=5)
    key_id = key.split("_")[1]
    results: list[ApiKeyRecord | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get(key_id, blocking=True)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # let them all ask while the first load is under way
    release.set()
    for thread in threads:
        thread.join(5)
    assert lookups == [key_id] and cache.loads == 1
    assert len(results) == 8 and all(r is not None and r.key_id == key_id for r in results)


def test_a_failed_shared_load_fails_every_waiter_and_is_not_cached() -> None:
    import threading
    import time

    release = threading.Event()
    calls: list[str] = []

    def lookup(key_id: str) -> ApiKeyRecord | None:
        calls.append(key_id)
        release.wait(5)
        raise OSError("event store unreachable")

    cache = ApiKeyCache(lookup, ttl=5)
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            cache.get("0123456789abcdef", blocking=True)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1 and len(errors) == 4
    with pytest.raises(WouldBlock):  # nothing was cached: the next request asks again
        cache.get("0123456789abcdef", blocking=False)


def authenticator(*records: ApiKeyRecord, now: datetime = AT) -> Authenticator:
    by_id = {r.key_id: r for r in records}
    cache = ApiKeyCache(by_id.get, ttl=5)
    return Authenticator(TokenVerifier(), cache, clock=lambda: now)


def test_a_good_key_is_its_principal() -> None:
    _, key = generate_key()
    principal = authenticator(record(key)).authenticate(Credentials("ApiKey", key), blocking=True)
    assert (principal.id, principal.kind) == (key.split("_")[1], "apikey")
    assert principal.permissions == {"tasks:read"}
    assert principal.actor.as_dict() == {"id": key.split("_")[1], "kind": "apikey"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"revoked_at": AT - timedelta(seconds=1)}, "API key revoked"),
        ({"expires_at": AT}, "API key expired"),
        ({"expires_at": AT - timedelta(days=1)}, "API key expired"),
        ({"secret_hash": "0" * 64}, "invalid API key"),
    ],
)
def test_bad_keys_are_refused(overrides: dict[str, Any], message: str) -> None:
    _, key = generate_key()
    auth = authenticator(record(key, **overrides))
    with pytest.raises(AuthFailure, match=f"^{message}$"):
        auth.authenticate(Credentials("ApiKey", key), blocking=True)


def test_an_unknown_key_reads_like_a_wrong_secret() -> None:
    _, key = generate_key()
    with pytest.raises(AuthFailure, match=r"^invalid API key$"):
        authenticator().authenticate(Credentials("ApiKey", key), blocking=True)


def test_a_key_expiring_in_the_future_works_until_then() -> None:
    _, key = generate_key()
    auth = authenticator(record(key, expires_at=AT + timedelta(seconds=1)))
    assert auth.authenticate(Credentials("ApiKey", key), blocking=True).kind == "apikey"


# -- tokens (HS256, fixed clock) --------------------------------------------------------------


def token(**claims: Any) -> str:
    payload = {"sub": "u", "exp": NOW + 60, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(SECRET.encode()))


def verifier(**kw: Any) -> TokenVerifier:
    return TokenVerifier(secret=SECRET, clock=lambda: NOW, **kw)


@pytest.mark.parametrize(
    ("claims", "ok"),
    [
        ({"exp": NOW + 1}, True),
        ({"exp": NOW - 29}, True),  # within the 30 s leeway
        ({"exp": NOW - 30}, False),
        ({"nbf": NOW + 30}, True),
        ({"nbf": NOW + 31}, False),
        ({"iat": NOW + 31}, False),
        ({"exp": "tomorrow"}, False),
        ({"exp": None}, False),
        ({"sub": ""}, False),
        ({"sub": 42}, False),
    ],
)
def test_time_claims_and_leeway(claims: dict[str, Any], ok: bool) -> None:
    if ok:
        assert verifier().verify(token(**claims), blocking=False).id == "u"
    else:
        with pytest.raises(AuthFailure):
            verifier().verify(token(**claims), blocking=False)


def test_issuer_and_audience_are_checked_only_when_configured() -> None:
    assert verifier().verify(token(iss="anyone", aud="anything"), blocking=False)
    strict = verifier(issuer="https://auth/", audience="taskexec")
    assert strict.verify(token(iss="https://auth/", aud=["x", "taskexec"]), blocking=False)
    for claims in ({"iss": "https://auth/"}, {"aud": "taskexec"}, {"iss": "x", "aud": "taskexec"}):
        with pytest.raises(AuthFailure):
            strict.verify(token(**claims), blocking=False)


def test_permissions_come_from_both_claims() -> None:
    principal = verifier().verify(
        token(permissions=["tasks:read"], scope="tasks:list  openid"), blocking=False
    )
    assert principal.permissions == {"tasks:read", "tasks:list", "openid"}
    assert verifier().verify(token(), blocking=False).permissions == frozenset()


def test_the_allow_list_follows_the_configuration() -> None:
    assert verifier().algorithms == {"HS256"}
    assert not TokenVerifier().enabled
    with pytest.raises(ValueError, match="32 bytes"):
        TokenVerifier(secret="short")
