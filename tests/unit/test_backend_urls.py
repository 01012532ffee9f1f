"""Every backend URL treats its options one way (app/adapters/backend_url.py); Cassandra's takes credentials.

No server is needed: the adapters are built, never connected.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cassandra.auth import PlainTextAuthProvider

from app.adapters.backend_url import BackendUrl
from app.adapters.cassandra_store import CassandraTransferStore
from app.adapters.kafka_bus import KafkaBusConfig
from app.adapters.tigerbeetle_ledger import TigerBeetleLedger
from app.bootstrap import make_bus, make_ledger, make_store

# Never a real password: only here to be looked for in messages.
PASSWORD = "s3cret-Pa55word"


def _store(url: str) -> object:
    store = CassandraTransferStore.from_url(url)
    store.close()
    return store


def _ledger(url: str) -> object:
    ledger = TigerBeetleLedger.from_url(url)
    ledger.close()
    return ledger


# One parser per backend URL (scheme, parser, a URL with an option it knows).
# Keyed by role, not scheme: the fast loop's `-k "not cassandra ..."` keeps
# the scheme names for tests that need the servers, and these need none.
PARSERS: dict[str, tuple[str, Callable[[str], object], str]] = {
    "store": ("cassandra", _store, "cassandra://db:9042/ks?consistency=ONE"),
    "bus": ("kafka", KafkaBusConfig.from_url, "kafka://broker:9092?group=g"),
    "ledger": ("tigerbeetle", _ledger, "tigerbeetle://127.0.0.1:3000?cluster_id=0"),
}


@pytest.mark.parametrize("backend", sorted(PARSERS))
def test_a_known_option_is_taken(backend: str) -> None:
    _, parse, url = PARSERS[backend]
    parse(url)


@pytest.mark.parametrize("backend", sorted(PARSERS))
def test_an_unknown_option_is_refused_naming_it_and_the_known_ones(backend: str) -> None:
    scheme, parse, url = PARSERS[backend]
    with pytest.raises(ValueError, match=rf"unknown {scheme}:// URL option\(s\) consistancy \(known: .+\)"):
        parse(f"{url}&consistancy=ONE")


@pytest.mark.parametrize("backend", sorted(PARSERS))
def test_an_option_given_twice_is_refused(backend: str) -> None:
    _, parse, url = PARSERS[backend]
    option = url.split("?", 1)[1]
    with pytest.raises(ValueError, match="given more than once"):
        parse(f"{url}&{option}")


@pytest.mark.parametrize(
    ("backend", "query", "option"),
    [
        ("store", "shards=many", "shards"),
        ("bus", "partitions=six", "partitions"),
        ("bus", "create_topics=perhaps", "create_topics"),
        ("ledger", "timeout_seconds=soon", "timeout_seconds"),
    ],
)
def test_a_value_of_the_wrong_type_names_its_option(backend: str, query: str, option: str) -> None:
    scheme, parse, url = PARSERS[backend]
    with pytest.raises(ValueError, match=rf"{scheme}:// URL option {option}="):
        parse(f"{url.split('?', 1)[0]}?{query}")


@pytest.mark.parametrize("backend", ["bus", "ledger"])
def test_a_backend_without_credentials_refuses_them_without_quoting_the_password(backend: str) -> None:
    _, parse, url = PARSERS[backend]
    with pytest.raises(ValueError, match="takes no credentials") as refused:
        parse(url.replace("://", f"://svc:{PASSWORD}@"))
    assert PASSWORD not in str(refused.value)


@pytest.mark.parametrize(
    ("make", "url"),
    [
        (make_store, "sqlite:///var/store.db?journal=wal"),
        (make_ledger, "embedded:///var/ledger.db?fsync=0"),
        (make_bus, "inprocess://?partitions=3"),
    ],
)
def test_the_embedded_backends_know_no_option_and_say_so(make: Callable[[str], object], url: str) -> None:
    with pytest.raises(ValueError, match=r"unknown \w+:// URL option\(s\) \w+ \(known: none\)"):
        make(url)


def test_an_embedded_url_without_options_still_works(tmp_path: Path) -> None:
    store = make_store(f"sqlite:///{tmp_path}/store.db")
    ledger = make_ledger(f"embedded:///{tmp_path}/ledger.db")
    try:
        assert (tmp_path / "store.db").exists() and (tmp_path / "ledger.db").exists()
    finally:
        store.close()
        ledger.close()


# -- Cassandra's credentials --------------------------------------------------------


def _auth_of(store: CassandraTransferStore) -> PlainTextAuthProvider | None:
    # Built, not connected (the driver resolves its hosts here: hence loopback addresses below).
    cluster = store.db._new_cluster()
    try:
        provider = cluster.auth_provider
        assert provider is None or isinstance(provider, PlainTextAuthProvider)
        return provider
    finally:
        cluster.shutdown()


def test_the_store_url_s_credentials_are_taken() -> None:
    store = CassandraTransferStore.from_url(f"cassandra://svc:{PASSWORD}@127.0.0.1,127.0.0.2:9142/ks?local_dc=dc1")
    try:
        auth = _auth_of(store)
        assert auth is not None and (auth.username, auth.password) == ("svc", PASSWORD)
        assert (store.db.hosts, store.db.port, store.keyspace, store.db.local_dc) == (
            ["127.0.0.1", "127.0.0.2"],
            9142,
            "ks",
            "dc1",
        )
    finally:
        store.close()


def test_the_store_url_s_credentials_are_percent_decoded() -> None:
    store = CassandraTransferStore.from_url("cassandra://svc%2Bweb:p%40ss%3Aword@127.0.0.1/ks")
    try:
        auth = _auth_of(store)
        assert auth is not None and (auth.username, auth.password) == ("svc+web", "p@ss:word")
    finally:
        store.close()


def test_the_variables_credentials_are_taken_when_the_store_url_has_none() -> None:
    store = make_store("cassandra://127.0.0.1/ks", ("svc", PASSWORD))
    assert isinstance(store, CassandraTransferStore)
    try:
        auth = _auth_of(store)
        assert auth is not None and (auth.username, auth.password) == ("svc", PASSWORD)
    finally:
        store.close()


def test_without_credentials_the_store_asks_for_no_authentication() -> None:
    store = CassandraTransferStore.from_url("cassandra://127.0.0.1/ks")
    try:
        assert _auth_of(store) is None
    finally:
        store.close()


def test_credentials_in_both_places_are_refused_without_quoting_either_password() -> None:
    with pytest.raises(ValueError, match="both in STORE_URL and in CASSANDRA_USERNAME") as refused:
        CassandraTransferStore.from_url(f"cassandra://svc:{PASSWORD}@db/ks", ("other", "other-" + PASSWORD))
    assert PASSWORD not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("cassandra://db1:9042,db2:9043/ks", "same port"),
        ("cassandra://db:port/ks", "port must be a number"),
        ("cassandra://db1,,db2/ks", "needs a host"),
        ("kafka://broker:9092", "not a cassandra:// URL"),
    ],
    ids=["ports-differ", "port-not-a-number", "empty-host", "another-scheme"],
)
def test_a_malformed_store_url_is_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CassandraTransferStore.from_url(url)


def test_the_store_url_defaults() -> None:
    store = CassandraTransferStore.from_url("cassandra://db")
    try:
        assert (store.db.hosts, store.db.port, store.keyspace, store.db.local_dc) == (
            ["db"],
            9042,
            "internal_transfer",
            None,
        )
        assert store.db.timeout_seconds == 5.0
    finally:
        store.close()


def test_the_parsed_url_never_shows_its_password() -> None:
    parsed = BackendUrl.parse(f"cassandra://svc:{PASSWORD}@db/ks", "cassandra", credentials=True)
    assert parsed.password == PASSWORD and PASSWORD not in repr(parsed)
    assert parsed.hosts == "db"
