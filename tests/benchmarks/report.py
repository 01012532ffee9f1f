"""The plain-text table `make bench` prints."""

from __future__ import annotations

from typing import Any

from tests.benchmarks.stats import ratio

CPU_ORDER = (
    "web",
    "worker",
    "engine",
    "cassandra",
    "kafka",
    "tigerbeetle",
    "floor client",
    "load generator",
    "other (machine)",
)


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _cpu_line(cpu_ms: dict[str, float]) -> str:
    names = [n for n in CPU_ORDER if n in cpu_ms] + [n for n in cpu_ms if n not in CPU_ORDER]
    parts = [f"{name} {cpu_ms[name]:.2f}" for name in names]
    ours = sum(value for name, value in cpu_ms.items() if name != "other (machine)")
    return "  ".join(parts) + f"  | measured total {ours:.2f}"


def _background(rates: dict[str, float]) -> str:
    return ", ".join(f"{name} {rate:.2f}" for name, rate in rates.items() if name in ("cassandra", "kafka", "machine"))


def render(results: dict[str, Any]) -> str:
    options = results["options"]
    lines = [
        "",
        f"== make bench: {options['transfers']} transfers per concurrency, {options['users']} users, "
        f"{options['warmup']} warm-up transfers ==",
        f"service from: {options['service_dir']}",
        f"ledger: {results.get('ledger', '?')}",
        f"machine: {results['machine']['cores']} cores, load average {results['machine']['loadavg_1m']:.2f} at start",
        f"dev services found by: {results.get('dev_services', {})} (shared: their CPU includes anyone else's use)",
    ]
    service = results.get("service", {}).get("by_concurrency", {})
    ceiling = results.get("ceiling", {}).get("by_concurrency", {})
    floor_phase = results.get("floor", {})
    floor = floor_phase.get("by_concurrency", {})
    if floor_phase and not floor_phase.get("ledger_steps"):
        lines.append("floor: NO ledger steps (embedded ledger: it has no TigerBeetle part to measure)")
    for concurrency in options["concurrencies"]:
        key = str(concurrency)
        s, c, f = service.get(key, {}), ceiling.get(key, {}), floor.get(key, {})
        lines += [
            "",
            f"-- concurrency {concurrency} --",
            f"{'':24}{'POST/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'settled/s':>11}",
        ]
        if s:
            lines.append(
                f"{'service':24}{_num(s['post_per_s']):>9}{_num(s['p50_ms'], 1):>9}{_num(s['p99_ms'], 1):>9}"
                f"{_num(s['p999_ms'], 1):>10}{_num(s['settled_per_s']):>11}"
            )
        if c:
            lines.append(
                f"{'ceiling (bare Flask)':24}{_num(c['post_per_s']):>9}{_num(c['p50_ms'], 1):>9}"
                f"{_num(c['p99_ms'], 1):>9}{_num(c['p999_ms'], 1):>10}{'':>11}"
            )
        if f:
            lines.append(f"{'floor (raw clients)':24}{'':>9}{'':>9}{'':>9}{'':>10}{_num(f['settled_per_s']):>11}")
        if s:
            lines.append(
                f"service POST/s vs ceiling: {_ratio(ratio(s['post_per_s'], c.get('post_per_s')))}   "
                f"service settled/s vs floor: {_ratio(ratio(s['settled_per_s'], f.get('settled_per_s')))}"
            )
            lines.append(
                f"accepted {s['accepted']}/{s['requests']}, settled {s['settled']} "
                f"({s['succeeded']} success, {s['failed']} failed), unfinished {s['unfinished']}, "
                f"settle window {_num(s['settle_window_s'], 2)} s, POST failures {s['post_failures'] or 'none'}, "
                f"reconnects {s['reconnects']}, status polls {s['gets_sentinel']} + sweep {s['gets_sweep']}"
            )
            if (s.get("cpu_window_closed_early_s") or 0) > 0:
                lines.append(
                    f"NOTE: CPU was read {s['cpu_window_closed_early_s']:.2f} s before the last transfer settled"
                )
            lines.append("CPU ms per settled transfer, service: " + _cpu_line(s["cpu_ms_per_settled"]))
            lines.append("  idle just before (CPU-s per s): " + _background(s.get("background_cpu_per_s", {})))
        if f:
            lines.append("CPU ms per transfer, floor:           " + _cpu_line(f["cpu_ms_per_settled"]))
            lines.append("  idle just before (CPU-s per s): " + _background(f.get("background_cpu_per_s", {})))
            steps = ", ".join(f"{name} {1000 * sec / f['transfers']:.2f}" for name, sec in f["step_seconds"].items())
            lines.append(f"floor wall ms per transfer by step: {steps}")
        if c:
            lines.append(
                f"ceiling CPU s: web {c['cpu_s'].get('web', 0):.2f}, load generator "
                f"{c['cpu_s'].get('load generator', 0):.2f}, other (machine) {c['cpu_s'].get('other (machine)', 0):.2f}"
            )
    paced = results.get("service", {}).get("paced")
    if paced:
        lines += [
            "",
            f"-- paced at {paced['rate']:.0f} POST/s ({paced['fraction']:.0%} of the best POST/s above), "
            "latency from each request's due time --",
            f"{'service':24}{_num(paced['post_per_s']):>9}{_num(paced['p50_ms'], 1):>9}{_num(paced['p99_ms'], 1):>9}"
            f"{_num(paced['p999_ms'], 1):>10}{_num(paced['settled_per_s']):>11}",
            "CPU ms per settled transfer, service: " + _cpu_line(paced["cpu_ms_per_settled"]),
        ]
    hot = results.get("service", {}).get("hot")
    if hot:
        lines += [
            "",
            f"-- hot users: the same load from {hot['users']} users, concurrency {hot['concurrency']} --",
            f"{'service':24}{_num(hot['post_per_s']):>9}{_num(hot['p50_ms'], 1):>9}{_num(hot['p99_ms'], 1):>9}"
            f"{_num(hot['p999_ms'], 1):>10}{_num(hot['settled_per_s']):>11}",
            "CPU ms per settled transfer, service: " + _cpu_line(hot["cpu_ms_per_settled"]),
        ]
    rss = results.get("service", {}).get("peak_rss_mib", {})
    if rss:
        lines += ["", "peak RSS (VmHWM) MiB: " + ", ".join(f"{k} {_num(v)}" for k, v in rss.items())]
    lines.append(
        "'other (machine)': CPU the machine spent outside the processes measured (other users, the kernel). "
        "'idle just before': what Cassandra, Kafka and the machine used in 3 s with no load from this run; "
        "they are shared, so anything above zero there is someone else's load counted in their figures."
    )
    return "\n".join(lines)
