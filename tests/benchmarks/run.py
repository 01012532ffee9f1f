"""`make bench`: the service on the real stack against its ceiling (bare Flask) and its floor (raw clients).

    .venv/bin/python -m tests.benchmarks [--transfers N] [--concurrency 32,16] [--service-dir PATH] ...

Prints a table per concurrency and writes the figures as JSON under var/bench/.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka.admin import KafkaAdminClient

from tests.benchmarks import report
from tests.benchmarks.floor import Floor, FloorConfig
from tests.benchmarks.loadgen import LoadResult, Request, run_load
from tests.benchmarks.procstat import (
    descendants,
    machine_busy_seconds,
    parents,
    peak_rss_kib,
    self_cpu_seconds,
    tree_cpu_seconds,
)
from tests.benchmarks.service_load import (
    Batch,
    deposit_requests,
    run_tag,
    sweep_until_settled,
    tokens_like,
    wait_for_sentinels,
)
from tests.benchmarks.services import (
    REPO_ROOT,
    DevServices,
    Process,
    flask_cli,
    log,
    loopback_only,
    procfile_commands,
    shell_process,
    venv_bin,
    wait_ready,
)
from tests.support.tigerbeetle_server import TigerBeetleServer, binary_version, find_tigerbeetle_binary

HOST = "127.0.0.1"
ADMIN_USER = 1
FIRST_USER = 1001


@dataclass(frozen=True)
class Options:
    transfers: int
    concurrencies: list[int]
    users: int
    hot_users: int
    warmup: int
    service_dir: Path
    settle_timeout: float
    ceiling: bool
    floor: bool
    output: Path | None
    paced_fraction: float = 0.5


def parse_args(argv: list[str] | None = None) -> Options:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=int(env("BENCH_TRANSFERS", "2000")), help="per concurrency")
    parser.add_argument("--concurrency", default=env("BENCH_CONCURRENCY", "32,16"), help="comma-separated")
    # A real day: thousands of users, each making a few transfers, so the per-user
    # first-of-the-day costs (opening the day's quota) are paid as often as in production.
    parser.add_argument("--users", type=int, default=int(env("BENCH_USERS", "3000")))
    parser.add_argument(
        "--hot-users",
        type=int,
        default=int(env("BENCH_HOT_USERS", "16")),
        help="then the same load from this many of them: the hot-user figure (0: skip)",
    )
    parser.add_argument("--warmup", type=int, default=int(env("BENCH_WARMUP", "200")), help="transfers, not measured")
    parser.add_argument(
        "--service-dir",
        default=env("BENCH_SERVICE_DIR", str(REPO_ROOT)),
        help="checkout whose web/worker/engine to run (default: this one)",
    )
    parser.add_argument("--settle-timeout", type=float, default=float(env("BENCH_SETTLE_TIMEOUT", "180")))
    parser.add_argument("--no-ceiling", action="store_true", help="skip the bare-Flask ceiling")
    parser.add_argument("--no-floor", action="store_true", help="skip the raw-client floor")
    parser.add_argument("--output", default=env("BENCH_OUTPUT"), help="JSON path (default var/bench/...)")
    parser.add_argument(
        "--paced",
        type=float,
        default=float(env("BENCH_PACED", "0.5")),
        help="then send at this fraction of the best POST/s, paced, for latency at that load (0: skip)",
    )
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    if args.transfers < 1 or not concurrencies or min(concurrencies) < 1 or args.users < 1:
        parser.error("transfers, users and every concurrency must be positive")
    if not 0 <= args.hot_users <= args.users:
        parser.error("--hot-users is 0 (skip) to --users")
    return Options(
        transfers=args.transfers,
        concurrencies=concurrencies,
        users=args.users,
        hot_users=args.hot_users,
        warmup=max(0, args.warmup),
        service_dir=Path(args.service_dir).resolve(),
        settle_timeout=args.settle_timeout,
        ceiling=not args.no_ceiling,
        floor=not args.no_floor,
        output=Path(args.output) if args.output else None,
        paced_fraction=max(0.0, args.paced),
    )


class CpuMeter:
    """utime+stime of named process trees, this process, and the whole machine, over one phase."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = {name: pids for name, pids in groups.items() if pids}
        self._before: dict[str, float] = {}
        self.started = 0.0

    def _sample(self) -> dict[str, float]:
        sample = {name: tree_cpu_seconds(pids) for name, pids in self.groups.items()}
        sample["load generator"] = self_cpu_seconds()
        sample["machine"] = machine_busy_seconds()
        return sample

    def background(self, seconds: float = 3.0) -> dict[str, float]:
        """CPU-seconds per second each group used while this harness sent nothing: other users' share."""
        before = self._sample()
        time.sleep(seconds)
        after = self._sample()
        return {name: (after[name] - before[name]) / seconds for name in after if name != "load generator"}

    def start(self) -> None:
        self._before = self._sample()
        self.started = time.time()

    def stop(self) -> dict[str, float]:
        """CPU-seconds used per group; `other` is what the machine spent outside them.

        A group whose process went away meanwhile (a dev service restarted by
        someone else) gets nan: its figure would be meaningless.
        """
        after = self._sample()
        used = {name: after[name] - self._before[name] for name in after}
        for name, pids in self.groups.items():
            if not all(Path(f"/proc/{pid}").exists() for pid in pids):
                used[name] = math.nan
                log(f"WARNING: {name} (pid {pids}) is gone: restarted during the measurement? its CPU is unknown")
        ours = sum(value for name, value in used.items() if name != "machine" and not math.isnan(value))
        used["other (machine)"] = max(0.0, used.pop("machine") - ours)
        return used


def _latency(load: LoadResult) -> dict[str, float]:
    return {"p50_ms": load.latency_ms(0.5), "p99_ms": load.latency_ms(0.99), "p999_ms": load.latency_ms(0.999)}


def _load_figures(load: LoadResult) -> dict[str, Any]:
    return {
        "requests": load.count,
        "answered": len(load.latencies),
        "post_per_s": load.per_second,
        **_latency(load),
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "errors": load.errors,
        "reconnects": load.reconnects,
        "load_generator_cpu_s": load.cpu_seconds,
    }


# -- the ceiling ------------------------------------------------------------------------


def ceiling_phase(options: Options, log_dir: Path, port: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "PATH": f"{venv_bin(REPO_ROOT)}{os.pathsep}{os.environ.get('PATH', '')}",
        "XDG_RUNTIME_DIR": str(runtime_dir(log_dir)),
    }
    # Its own config file: gunicorn would otherwise read the service's ./gunicorn.conf.py.
    command = f"gunicorn -c tests/benchmarks/ceiling_gunicorn.py --bind {HOST}:{port} tests.benchmarks.ceiling_app:app"
    web = shell_process("ceiling-web", command, env, REPO_ROOT, log_dir)
    figures: dict[str, Any] = {"command": command, "by_concurrency": {}}
    try:
        wait_for_port(web, port)
        body = json.dumps({"amount": "1.00000000", "from_account": {"account_type": "funding"}}).encode()
        request = Request("POST", "/api/v1/user/internal_transfer", body, {"Content-Type": "application/json"})
        run_load(HOST, port, [request] * min(options.transfers, 500), max(options.concurrencies))
        for concurrency in options.concurrencies:
            meter = CpuMeter({"web": [web.pid]})
            meter.start()
            load = run_load(HOST, port, [request] * options.transfers, concurrency)
            cpu = meter.stop()
            figures["by_concurrency"][str(concurrency)] = {**_load_figures(load), "cpu_s": cpu}
            log(f"ceiling c={concurrency}: {load.per_second:.0f} POST/s")
    finally:
        web.stop()
    return figures


def runtime_dir(log_dir: Path) -> Path:
    """gunicorn puts its control socket in $XDG_RUNTIME_DIR (else one ~/.gunicorn shared by every gunicorn)."""
    path = log_dir / "run"
    path.mkdir(exist_ok=True)
    return path


def wait_for_port(process: Process, port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{process.name} did not listen on {port}")


# -- the service ------------------------------------------------------------------------


@dataclass
class ServiceStack:
    options: Options
    dev: DevServices
    tigerbeetle: TigerBeetleServer | None
    log_dir: Path
    tag: str
    port: int

    @property
    def keyspace(self) -> str:
        return f"bench_{self.tag}"

    @property
    def topic_prefix(self) -> str:
        return f"bench-{self.tag}-"

    def env(self) -> dict[str, str]:
        dev = self.dev.env
        hosts = ",".join(f"{h}:{dev['CASSANDRA_PORT']}" for h in dev["CASSANDRA_HOSTS"].split(","))
        prefix = self.topic_prefix
        ledger = self.tigerbeetle.url if self.tigerbeetle else f"embedded:///{self.log_dir}/ledger.db"
        env = {k: v for k, v in os.environ.items() if k not in ("CRASH_POINTS", "BACKGROUND_WORKERS")}
        env.update(
            STORE_URL=f"cassandra://{hosts}/{self.keyspace}?consistency=LOCAL_QUORUM",
            LEDGER_URL=ledger,
            BUS_URL=(
                f"kafka://{dev['KAFKA_BOOTSTRAP_SERVERS']}?topic_prefix={prefix}"
                f"&group={prefix}settlement&engine_group={prefix}engine"
            ),
            JWT_SECRET=self.secret,
            OPERATOR_JWT_SECRET=self.operator_secret,
            PORT=str(self.port),
            WEB_CONCURRENCY="2",
            GUNICORN_THREADS="8",
            # The load sends several transfers per user per second: never refused, the limiter's cost still counted.
            TRANSFER_RATE_LIMIT="1000000 per second",
            READ_RATE_LIMIT="1000000 per second",
            PATH=f"{venv_bin(self.options.service_dir)}{os.pathsep}{os.environ.get('PATH', '')}",
            XDG_RUNTIME_DIR=str(runtime_dir(self.log_dir)),
        )
        env.pop("REFERENCE_ENGINE_REJECT_SUFFIX", None)
        env.pop("REFERENCE_ENGINE_DB", None)
        return env

    def __post_init__(self) -> None:
        self.secret = secrets.token_hex(32)
        self.operator_secret = secrets.token_hex(32)
        self.processes: dict[str, Process] = {}

    def start(self) -> None:
        env = self.env()
        service_dir = self.options.service_dir
        log(f"schema: {flask_cli(service_dir, env, 'db', 'init')} (keyspace {self.keyspace})")
        procfile = procfile_commands(service_dir)
        commands = {
            "engine": "python -m consumers.reference_engine",
            "worker": procfile["worker"],
            "web": loopback_only(procfile["web"]),
        }
        for name, command in commands.items():
            self.processes[name] = shell_process(name, command, env, service_dir, self.log_dir)
        self.commands = commands
        wait_ready(f"http://{HOST}:{self.port}/readyz", self.processes["web"])

    def pids(self) -> dict[str, list[int]]:
        groups = {name: [process.pid] for name, process in self.processes.items()}
        for server in ("cassandra", "kafka"):
            pid, _ = self.dev.pid(server)
            groups[server] = [pid] if pid else []
        groups["tigerbeetle"] = [self.tigerbeetle.pid] if self.tigerbeetle and self.tigerbeetle.pid else []
        return groups

    def peak_rss_mib(self) -> dict[str, float | None]:
        found: dict[str, float | None] = {}
        web = self.processes["web"].pid
        children = [pid for pid in descendants(web, parents()) if pid != web]
        for n, pid in enumerate(sorted(children)):
            kib = peak_rss_kib(pid)
            found[f"web worker {n + 1}"] = kib / 1024 if kib is not None else None
        for name in ("web", "worker", "engine"):
            kib = peak_rss_kib(self.processes[name].pid)
            found["web master" if name == "web" else name] = kib / 1024 if kib is not None else None
        return found

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if not process.alive():
                raise RuntimeError(f"{name} exited:\n{process.log_tail()}")

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()

    def drop_data(self) -> None:
        """Best effort: the run's keyspace and topics."""
        from cassandra.cluster import Cluster

        dev = self.dev.env
        try:
            cluster = Cluster(dev["CASSANDRA_HOSTS"].split(","), port=int(dev["CASSANDRA_PORT"]))
            try:
                cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}", timeout=60)
            finally:
                cluster.shutdown()
        except Exception as exc:
            log(f"could not drop keyspace {self.keyspace}: {exc!r}")
        delete_topics(dev["KAFKA_BOOTSTRAP_SERVERS"], self.topic_prefix)


def delete_topics(servers: str, prefix: str) -> None:
    try:
        admin = KafkaAdminClient(bootstrap_servers=servers.split(","), request_timeout_ms=10_000)
        try:
            mine = [topic for topic in admin.list_topics() if topic.startswith(prefix)]
            if mine:
                admin.delete_topics(mine, timeout_ms=10_000)
        finally:
            admin.close()
    except Exception as exc:
        log(f"could not delete topics {prefix}*: {exc!r}")


def service_phase(stack: ServiceStack) -> dict[str, Any]:
    options = stack.options
    stack.start()
    env = stack.env()
    users = list(range(FIRST_USER, FIRST_USER + options.users))
    admin = flask_cli(options.service_dir, env, "token", str(ADMIN_USER), "--admin", "--ttl", "21600")
    template = flask_cli(options.service_dir, env, "token", str(users[0]), "--ttl", "21600")
    tokens = tokens_like(template, stack.secret, users)
    total = options.warmup + options.transfers * (len(options.concurrencies) + 1)
    per_user = max(1_000_000, 2 * math.ceil(total / len(users)))
    funded = run_load(HOST, stack.port, deposit_requests(admin, users, str(per_user), stack.tag), 8)
    if funded.statuses.get(201, 0) != len(users):
        raise RuntimeError(f"funding users failed: {dict(funded.statuses)} (see {stack.log_dir}/web.log)")
    log(f"funded {len(users)} users with {per_user} USDT each")
    figures: dict[str, Any] = {
        "service_dir": str(options.service_dir),
        "commands": stack.commands,
        "users": len(users),
        "by_concurrency": {},
    }
    if options.warmup:
        warm = Batch.build(users, tokens, options.warmup, f"{stack.tag}-warm")
        warm.record_posts(run_load(HOST, stack.port, warm.requests, max(options.concurrencies)))
        deadline = time.monotonic() + options.settle_timeout
        sweep_until_settled(warm, HOST, stack.port, tokens, deadline)
        log(f"warm-up: {options.warmup} transfers, {len(warm.open())} still open")
    for concurrency in options.concurrencies:
        stack.check_alive()
        figures["by_concurrency"][str(concurrency)] = measure_service(stack, users, tokens, concurrency)
    if options.paced_fraction > 0:
        # Latency at a steady fraction of the best throughput just measured (an open loop).
        best = max(f["post_per_s"] for f in figures["by_concurrency"].values())
        rate = best * options.paced_fraction
        stack.check_alive()
        paced = measure_service(stack, users, tokens, max(options.concurrencies), rate=rate)
        figures["paced"] = {**paced, "rate": rate, "fraction": options.paced_fraction}
    if options.hot_users:
        # The second figure: the same load from a few users, their quotas long open.
        stack.check_alive()
        hot = measure_service(stack, users[: options.hot_users], tokens, max(options.concurrencies), label="hot-")
        figures["hot"] = {**hot, "users": options.hot_users, "concurrency": max(options.concurrencies)}
    figures["peak_rss_mib"] = stack.peak_rss_mib()
    return figures


def measure_service(
    stack: ServiceStack,
    users: list[int],
    tokens: dict[int, str],
    concurrency: int,
    rate: float | None = None,
    label: str = "",
) -> dict[str, Any]:
    options = stack.options
    tag = f"{stack.tag}-{label}c{concurrency}" if rate is None else f"{stack.tag}-r{rate:.0f}"
    batch = Batch.build(users, tokens, options.transfers, tag)
    meter = CpuMeter(stack.pids())
    background = meter.background()
    meter.start()
    load = run_load(HOST, stack.port, batch.requests, concurrency, rate)
    batch.record_posts(load)
    deadline = time.monotonic() + options.settle_timeout
    sentinel_gets = wait_for_sentinels(batch, HOST, stack.port, tokens, deadline)
    cpu = meter.stop()
    cpu_closed_at = time.time()
    sweep_gets = sweep_until_settled(batch, HOST, stack.port, tokens, deadline)
    last = batch.last_update()
    settled = len(batch.tracked) - len(batch.open())
    window = (last - load.started_at) if last is not None else None
    figures = {
        **_load_figures(load),
        "accepted": len(batch.tracked),
        "post_failures": batch.post_failures,
        "settled": settled,
        "succeeded": sum(t.status == "success" for t in batch.tracked.values()),
        "failed": sum(t.status == "failed" for t in batch.tracked.values()),
        "unfinished": len(batch.open()),
        "settle_window_s": window,
        "settled_per_s": settled / window if window else None,
        "cpu_s": cpu,
        "background_cpu_per_s": background,
        "cpu_ms_per_settled": {name: 1000 * value / settled for name, value in cpu.items()} if settled else {},
        "cpu_window_closed_early_s": max(0.0, last - cpu_closed_at) if last is not None else None,
        "gets_sentinel": sentinel_gets,
        "gets_sweep": sweep_gets,
    }
    log(
        f"service {f'c={concurrency}' if rate is None else f'paced at {rate:.0f}/s'}: {load.per_second:.0f} POST/s, "
        f"{figures['settled_per_s'] or 0:.0f} settled/s, {figures['unfinished']} unfinished"
    )
    return figures


# -- the floor --------------------------------------------------------------------------


def floor_phase(options: Options, dev: DevServices, tigerbeetle: TigerBeetleServer | None, tag: str) -> dict[str, Any]:
    config = FloorConfig(
        cassandra_hosts=dev.env["CASSANDRA_HOSTS"].split(","),
        cassandra_port=int(dev.env["CASSANDRA_PORT"]),
        kafka_servers=dev.env["KAFKA_BOOTSTRAP_SERVERS"].split(","),
        tigerbeetle_address=tigerbeetle.address if tigerbeetle else None,
        keyspace=f"bench_floor_{tag}",
        topic_prefix=f"bench-floor-{tag}-",
        users=options.users,
    )
    floor = Floor(config)
    groups: dict[str, list[int]] = {}
    for server in ("cassandra", "kafka"):
        pid, _ = dev.pid(server)
        groups[server] = [pid] if pid else []
    groups["tigerbeetle"] = [tigerbeetle.pid] if tigerbeetle and tigerbeetle.pid else []
    figures: dict[str, Any] = {"ledger_steps": tigerbeetle is not None, "by_concurrency": {}}
    try:
        floor.setup()
        if options.warmup:
            floor.run(options.warmup, max(options.concurrencies))
        for concurrency in options.concurrencies:
            meter = CpuMeter(groups)
            background = meter.background()
            meter.start()
            result = floor.run(options.transfers, concurrency)
            cpu = meter.stop()
            cpu["floor client"] = cpu.pop("load generator")
            figures["by_concurrency"][str(concurrency)] = {
                "transfers": result.transfers,
                "elapsed_s": result.elapsed,
                "settled_per_s": result.per_second,
                "step_seconds": result.step_seconds,
                "cpu_s": cpu,
                "background_cpu_per_s": background,
                "cpu_ms_per_settled": {name: 1000 * value / result.transfers for name, value in cpu.items()},
            }
            log(f"floor c={concurrency}: {result.per_second:.0f} settled/s")
    finally:
        floor.close()
    return figures


# -- the run ----------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _machine() -> dict[str, Any]:
    load1, load5, _ = os.getloadavg()
    return {"cores": os.cpu_count(), "loadavg_1m": load1, "loadavg_5m": load5}


def _phase(name: str, run: Callable[[], dict[str, Any]], results: dict[str, Any]) -> None:
    log(f"--- {name} ---")
    results[name] = {"machine_before": _machine(), **run()}
    results[name]["machine_after"] = _machine()


def _raise_on_sigterm() -> None:
    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if not (options.service_dir / "Procfile").is_file():
        raise SystemExit(f"--service-dir {options.service_dir}: no Procfile there")
    _raise_on_sigterm()
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints where a stuck run waits
    tag = run_tag()
    out_dir = REPO_ROOT / "var" / "bench"
    log_dir = out_dir / tag
    log_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-tb-"))
    results: dict[str, Any] = {
        "tag": tag,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "options": {
            "transfers": options.transfers,
            "concurrencies": options.concurrencies,
            "users": options.users,
            "hot_users": options.hot_users,
            "warmup": options.warmup,
            "service_dir": str(options.service_dir),
        },
        "machine": _machine(),
    }
    dev = DevServices()
    tigerbeetle: TigerBeetleServer | None = None
    stack: ServiceStack | None = None
    output = options.output or out_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{tag}.json"
    try:
        dev.up()
        results["dev_services"] = {server: dev.pid(server)[1] for server in ("cassandra", "kafka")}
        binary = find_tigerbeetle_binary()
        if binary:
            tigerbeetle = TigerBeetleServer(binary, scratch).start()
            results["ledger"] = f"{binary_version(binary)}, single replica on loopback"
        else:
            results["ledger"] = "EMBEDDED ledger (no TigerBeetle: set TIGERBEETLE_BIN)"
        log(f"ledger: {results['ledger']}")
        if options.ceiling:
            _phase("ceiling", lambda: ceiling_phase(options, log_dir, _free_port()), results)
        stack = ServiceStack(options, dev, tigerbeetle, log_dir, tag, _free_port())
        _phase("service", lambda: service_phase(stack), results)
        stack.stop()
        if options.floor:
            _phase("floor", lambda: floor_phase(options, dev, tigerbeetle, tag), results)
    except BaseException as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if stack is not None:
            stack.stop()
            stack.drop_data()
        if tigerbeetle is not None:
            tigerbeetle.stop()
            tigerbeetle.remove_data()
        shutil.rmtree(scratch, ignore_errors=True)
        dev.down()
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(report.render(results))
        if "error" in results:
            print(f"RUN FAILED: {results['error']} (figures so far above)")
        print(f"figures: {output}\nlogs: {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
