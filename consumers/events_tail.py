"""Print one user's status events as they happen: `python -m consumers.events_tail --user-id N`.

For support staff, and a worked example of consuming `internal_transfer.events`
(docs/events.md): it reads the topic named by BUS_URL (kafka://...; or
KAFKA_BOOTSTRAP_SERVERS), keeps one user's events, drops duplicates by
(request_id, kind, to_status) as every consumer should, and prints a line each:

    2026-01-01T00:00:00.123456Z 7312528335831040001 USDT 100.00000000 funding->spot pending -> success \
by settlement: confirmed by the engine

`--json` prints each event's message as it is on the topic instead.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

from app.adapters.kafka_bus import KafkaBusConfig
from app.config import EventsTailSettings, Settings
from app.domain.events import StatusEvent, rfc3339
from app.domain.money import AssetCatalog
from app.ports.errors import DependencyUnavailable

# Dedupe memory: the last this many events' keys (a redelivery comes soon after the original).
_SEEN_LIMIT = 100_000


def _bus_config(settings: Settings) -> KafkaBusConfig:
    try:
        return KafkaBusConfig.from_url(EventsTailSettings().kafka_url(settings.bus_url))
    except ValueError as exc:
        raise SystemExit(f"events_tail: {exc}") from None


def describe(event: StatusEvent, catalog: AssetCatalog) -> str:
    try:
        amount = catalog.get(event.asset).format(event.amount)
    except Exception:  # an asset this deployment no longer lists: show the units
        amount = f"{event.amount} units"
    change = f"{event.from_status.value if event.from_status else '-'} -> {event.to_status.value}"
    failure = f" [{event.failure_reason.value}]" if event.failure_reason else ""
    kind = "" if event.kind.value == "status_changed" else f" ({event.kind.value})"
    return (
        f"{rfc3339(event.at)} {event.request_id} {event.asset} {amount}"
        f" {event.from_account_type}->{event.to_account_type} {change}{failure}{kind}"
        f" by {event.actor}: {event.reason}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consumers.events_tail", description=__doc__.splitlines()[0])
    parser.add_argument("--user-id", type=int, required=True)
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest event kept, not now")
    parser.add_argument("--json", action="store_true", help="print each event's message as JSON")
    parser.add_argument("--max-events", type=int, default=0, help="stop after this many (0: never)")
    parser.add_argument("--timeout", type=float, default=0.0, help="stop after this many seconds (0: never)")
    args = parser.parse_args(argv)
    settings = Settings()
    config = _bus_config(settings)
    catalog = AssetCatalog.from_toml(Path(settings.assets_file).read_text())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    deadline = time.monotonic() + args.timeout if args.timeout else None
    seen: OrderedDict[tuple[int, str, str, str], None] = OrderedDict()
    printed = 0

    def on_event(event: StatusEvent) -> None:
        nonlocal printed
        if event.user_id != args.user_id or event.dedupe_key in seen:
            return
        seen[event.dedupe_key] = None
        if len(seen) > _SEEN_LIMIT:
            seen.popitem(last=False)
        print(json.dumps(event.to_message(), sort_keys=True) if args.json else describe(event, catalog), flush=True)
        printed += 1
        if args.max_events and printed >= args.max_events:
            stop.set()

    def done() -> bool:
        return stop.is_set() or (deadline is not None and time.monotonic() > deadline)

    try:
        from app.adapters.kafka_events import follow_events

        follow_events(config, on_event, done, from_beginning=args.from_beginning)
    except DependencyUnavailable as exc:
        print(f"events_tail: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
