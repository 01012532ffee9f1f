#!/usr/bin/env python3
"""Wait until a Kafka broker or a Cassandra node answers a real client call.

    wait_ready.py kafka     HOST:PORT[,HOST:PORT...] [--timeout S] [--pid PID]
    wait_ready.py cassandra HOST[,HOST...]           [--port 9042] [--timeout S] [--pid PID]

Kafka:     a Metadata request (kafka-python KafkaAdminClient.list_topics()).
Cassandra: SELECT release_version FROM system.local (cassandra-driver, protocol v5).

With --pid, gives up as soon as that process has exited (the server died while starting).
Exit status: 0 ready, 1 not ready before the timeout / server died, 2 usage or missing client.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time


def _pid_alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) still answers kill(0): look at its state.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def probe_kafka(bootstrap: str) -> str:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","),
        client_id="devservices-wait-ready",
        request_timeout_ms=5000,
        api_version_auto_timeout_ms=5000,
    )
    try:
        topics = admin.list_topics()
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    brokers = len(cluster.get("brokers") or [])
    return f"cluster_id={cluster.get('cluster_id')} brokers={brokers} topics={len(topics)}"


def probe_cassandra(hosts: str, port: int) -> str:
    from cassandra.cluster import Cluster

    cluster = Cluster(
        contact_points=hosts.split(","),
        port=port,
        protocol_version=5,
        connect_timeout=5,
        control_connection_timeout=5,
    )
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local", timeout=10).one()
    finally:
        cluster.shutdown()
    return f"release_version={row.release_version}"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("server", choices=["kafka", "cassandra"])
    ap.add_argument("target", help="Kafka bootstrap servers, or Cassandra contact points (comma-separated)")
    ap.add_argument("--port", type=int, default=9042, help="Cassandra native port (default 9042)")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds (default 90)")
    ap.add_argument("--pid", type=int, default=None, help="stop waiting if this process exits")
    ap.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = ap.parse_args(argv)

    # Connection refusals while the server starts are expected: keep the clients quiet.
    logging.basicConfig(level=logging.CRITICAL)
    for name in ("kafka", "cassandra"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    try:
        if args.server == "kafka":
            import kafka  # noqa: F401
        else:
            import cassandra.cluster  # noqa: F401
    except ImportError as exc:
        pkg = "kafka-python" if args.server == "kafka" else "cassandra-driver"
        print(
            f"wait_ready: {pkg} is not importable by {sys.executable} ({exc}); "
            f"install it there or point DEVSERVICES_PYTHON at an interpreter that has it",
            file=sys.stderr,
        )
        return 2

    where = args.target if args.server == "kafka" else f"{args.target} port {args.port}"
    deadline = time.monotonic() + args.timeout
    attempt = 0
    last_error = "no attempt made"
    while True:
        attempt += 1
        try:
            if args.server == "kafka":
                info = probe_kafka(args.target)
            else:
                info = probe_cassandra(args.target, args.port)
            if not args.quiet:
                print(f"wait_ready: {args.server} at {where} is ready ({info})", file=sys.stderr)
            return 0
        except Exception as exc:  # any client error means "not ready yet"
            last_error = f"{type(exc).__name__}: {exc}"
        if not _pid_alive(args.pid):
            print(
                f"wait_ready: {args.server} process {args.pid} exited before {where} became ready; "
                f"last client error: {last_error}",
                file=sys.stderr,
            )
            return 1
        if time.monotonic() >= deadline:
            print(
                f"wait_ready: {args.server} at {where} not ready after {args.timeout:.0f}s "
                f"({attempt} attempts); last client error: {last_error}",
                file=sys.stderr,
            )
            return 1
        time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
