"""How fast `reporter run` is, against the built-in stand-in API on loopback.

Prints one table: each figure, its goal, and whether it is met. Not part of the
test suite: timings belong here, where a slow machine makes a slow number, not
a red build.

    .venv/bin/python benchmarks/run.py              # all eleven figures
    .venv/bin/python benchmarks/run.py --only 1 4   # some of them
    .venv/bin/python benchmarks/run.py --only 6 --reports 200   # (6) at a smaller scale

(5) needs Debian's Chromium: `apt-get install chromium`. (9) to (11) send a 5,000-person
team's statements through an SMTP server on loopback (aiosmtpd, a test dependency).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reporter.config import load_config
from reporter.files import default_templates_dir
from reporter.jobs import RunOptions, compose_report, fetch_tables
from reporter.magnific import MagnificClient
from reporter.periods import last_complete_month, parse_period
from reporter.printer import html_to_pdf
from reporter.sandbox import API_KEYS, GROUPS, PROJECTS, SandboxData, SandboxServer, synthetic_team

REPORTER = Path(sys.executable).parent / "reporter"
KEY = "benchmark-key"
GIB = 1024**3


@dataclass
class Figure:
    number: int
    what: str
    value: str
    goal: str
    met: bool | None  # None: not measured

    def row(self) -> tuple[str, ...]:
        verdict = {True: "met", False: "MISSED", None: "-"}[self.met]
        return (f"({self.number})", self.what, self.value, self.goal, verdict)


def config_text(count: int) -> str:
    """``count`` reports with filters that vary the way real teams' do."""
    lines = ['[email]\nfrom = "Usage Reports <reports@company.com>"\n']
    for i in range(count):
        lines.append(f'[[reports]]\nname = "report-{i:03d}"\nowners = ["owner{i}@company.com"]')
        kind = i % 4
        if kind == 0:
            lines.append(f'project_references = ["{PROJECTS[i % len(PROJECTS)][0]}"]')
        elif kind == 1:
            lines.append(f"group_ids = [{GROUPS[i % len(GROUPS)][0]}]")
        elif kind == 2:
            lines.append(f'api_key_ids = ["{API_KEYS[i % len(API_KEYS)]}"]')
        lines.append("")
    return "\n".join(lines)


@dataclass
class Timed:
    seconds: float
    peak_rss: int  # bytes, of the reporter process itself


# Peak memory is read by a small parent that execs nothing big: a child forked straight
# from this process (which holds the stand-in's data) would count our pages as its own.
_MEASURE = (
    "import resource, subprocess, sys;"
    "code = subprocess.call(sys.argv[2:]);"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss));"
    "sys.exit(code)"
)


def run_reporter(
    args: Sequence[str],
    server: SandboxServer,
    work: Path,
    command: str = "run",
    *,
    smtp_port: int | None = None,
) -> Timed:
    """One whole `reporter run` (or ``command``) process: wall time and its own peak memory.
    A dry run, unless ``smtp_port`` names a mail server to send through."""
    env = {
        **os.environ,
        "MAGNIFIC_API_KEY": KEY,
        "MAGNIFIC_API_BASE_URL": server.url,
    }
    if smtp_port is not None:
        env |= {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port), "SMTP_SECURITY": "none"}
    dry = ["--dry-run"] if smtp_port is None else []
    peak = work / "peak-rss-kib"
    with tempfile.TemporaryFile(dir=work) as errors:
        start = time.perf_counter()
        measured = [sys.executable, "-c", _MEASURE, str(peak), str(REPORTER), command, *dry]
        code = subprocess.call(
            [*measured, "-q", *args],
            env=env,
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        seconds = time.perf_counter() - start
        if code != 0:
            errors.seek(0)
            raise SystemExit(f"reporter {command} failed ({code}):\n{errors.read().decode()}")
    return Timed(seconds, int(peak.read_text()) * 1024)


def write_config(work: Path, name: str, count: int) -> Path:
    path = work / name
    path.write_text(config_text(count), encoding="utf-8")
    return path


def common_args(config: Path, out: Path, period: str) -> list[str]:
    return ["--config", str(config), "--period", period, "--out", str(out)]


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


class Bench:
    def __init__(self, work: Path, period: str) -> None:
        self.work = work
        self.period = period
        self.warm_per_report: float | None = None

    def cold(self, server: SandboxServer) -> Figure:
        config = write_config(self.work, "one.toml", 1)
        args = common_args(config, self.work / "out-cold", self.period)
        run_reporter(args, server, self.work)  # bytecode compiled, disk cache warm
        seconds = median_of(3, lambda: run_reporter(args, server, self.work).seconds)
        return Figure(1, "one report, whole process, cold", fmt_s(seconds), "<= 3 s", seconds <= 3)

    def warm(self, server: SandboxServer) -> Figure:
        """The cost of one more report inside a run: (T(11) - T(1)) / 10."""
        one = write_config(self.work, "one.toml", 1)
        eleven = write_config(self.work, "eleven.toml", 11)

        def timed(config: Path) -> float:
            args = [*common_args(config, self.work / "out-warm", self.period), "--jobs", "1"]
            return run_reporter(args, server, self.work).seconds

        t1 = median_of(3, lambda: timed(one))
        t11 = median_of(3, lambda: timed(eleven))
        per = (t11 - t1) / 10
        self.warm_per_report = per
        return Figure(2, "per report, warm, inside one run", f"{per:.3f} s", "<= 0.5 s", per <= 0.5)

    def hundred(self, server: SandboxServer) -> Figure:
        config = write_config(self.work, "hundred.toml", 100)
        args = [*common_args(config, self.work / "out-100", self.period), "--jobs", "2"]
        seconds = run_reporter(args, server, self.work).seconds
        return Figure(3, "100 reports, --jobs 2", fmt_s(seconds), "<= 30 s", seconds <= 30)

    def watch(self, server: SandboxServer, today: dt.date) -> Figure:
        """`reporter watch` over 100 reports, each with a budget its month has passed, so
        every report fetches, decides and writes an alert email with its chart."""
        config = self.work / "watch.toml"
        config.write_text(
            config_text(100).replace("owners = [", "budget_credits = 100\nowners = ["),
            encoding="utf-8",
        )
        day = today - dt.timedelta(days=1)
        args = ["--config", str(config), "--date", day.isoformat()]
        args += ["--out", str(self.work / "out-watch")]
        run_reporter(args, server, self.work, "watch")  # caches warm
        seconds = median_of(3, lambda: run_reporter(args, server, self.work, "watch").seconds)
        written = len(list((self.work / "out-watch").rglob("*.eml")))
        if written != 100:
            raise SystemExit(f"reporter watch wrote {written} alert emails, not 100")
        return Figure(7, "reporter watch, 100 reports", fmt_s(seconds), "<= 10 s", seconds <= 10)

    def help_text(self) -> Figure:
        """`reporter --help`: what a person waits for before anything else."""

        def once() -> float:
            start = time.perf_counter()
            subprocess.run([str(REPORTER), "--help"], check=True, capture_output=True)
            return time.perf_counter() - start

        once()  # bytecode compiled
        seconds = median_of(3, once)
        return Figure(8, "reporter --help", fmt_s(seconds), "<= 0.5 s", seconds <= 0.5)

    def many(self, server: SandboxServer, count: int) -> list[Figure]:
        """Peak memory must not grow with the number of reports: ``count`` against 10."""
        runs = {}
        for n in (10, count):
            config = write_config(self.work, f"many-{n}.toml", n)
            args = [*common_args(config, self.work / f"out-many-{n}", self.period), "--jobs", "2"]
            runs[n] = run_reporter(args, server, self.work)
            folder = self.work / f"out-many-{n}" / self.period
            for kind in ("pdf", "eml"):
                written = len(list(folder.glob(f"*.{kind}")))
                if written != n:
                    raise SystemExit(f"{n} reports wrote {written} .{kind} files")
        ratio = runs[count].peak_rss / runs[10].peak_rss
        mib = {n: f"{t.peak_rss / 2**20:.0f} MiB" for n, t in runs.items()}
        return [
            Figure(
                6,
                f"peak memory, {count:,} reports against 10 (--dry-run --jobs 2)",
                f"{ratio:.2f} x ({mib[count]} against {mib[10]})",
                "<= 1.2 x",
                ratio <= 1.2,
            ),
            Figure(
                6,
                f"  reports per second over the {count:,}",
                f"{count / runs[count].seconds:.2f} /s ({fmt_s(runs[count].seconds)})",
                "",
                None,
            ),
        ]

    def big_team(self, server: SandboxServer, rows: int) -> Figure:
        config = write_config(self.work, "whole.toml", 1)
        config.write_text(
            '[email]\nfrom = "r@company.com"\n[[reports]]\nname = "whole-team"\n'
            'owners = ["cfo@company.com"]\n',
            encoding="utf-8",
        )
        args = common_args(config, self.work / "out-big", self.period)
        run_reporter(args, server, self.work)  # the stand-in builds its answers once
        timed = run_reporter(args, server, self.work)
        ok = timed.seconds <= 10 and timed.peak_rss <= 1.5 * GIB
        return Figure(
            4,
            f"5,000 users, a month by day ({rows / 1e6:.2f} M user rows)",
            f"{fmt_s(timed.seconds)}, {timed.peak_rss / GIB:.2f} GiB peak",
            "<= 10 s, <= 1.5 GiB",
            ok,
        )

    def chromium(self, server: SandboxServer) -> list[Figure]:
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            return [Figure(5, "vs headless Chromium", "chromium not installed", "-", None)]
        html, templates = self._report_html(server)
        page = self.work / "print" / "report.html"
        shutil.copytree(templates, page.parent, dirs_exist_ok=True)
        # The printer applies report.css itself; Chromium is given it by a <link>.
        linked = html.replace("</head>", '<link rel="stylesheet" href="report.css"></head>', 1)
        page.write_text(linked, encoding="utf-8")

        html_to_pdf(html, templates_dir=templates)  # warm: fonts, styles, imports

        def weasy() -> float:
            start = time.perf_counter()
            html_to_pdf(html, templates_dir=templates)
            return time.perf_counter() - start

        def chrome() -> float:
            profile = tempfile.mkdtemp(prefix="chromium-", dir=self.work)
            start = time.perf_counter()
            subprocess.run(
                [
                    browser,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--user-data-dir={profile}",
                    "--no-pdf-header-footer",
                    f"--print-to-pdf={self.work / 'print' / 'chromium.pdf'}",
                    page.as_uri(),
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
            return time.perf_counter() - start

        weasy_s = median_of(5, weasy)
        chrome_s = median_of(5, chrome)
        per = self.warm_per_report
        side_by_side = f"{weasy_s:.2f} s / {chrome_s:.2f} s = {weasy_s / chrome_s:.2f}"
        if per is None:
            return [
                Figure(
                    5,
                    "same HTML: WeasyPrint warm / Chromium fresh",
                    side_by_side,
                    "run with (2) for the goal",
                    None,
                )
            ]
        ratio = per / chrome_s
        return [
            Figure(5, "same HTML: WeasyPrint warm / Chromium fresh", side_by_side, "", None),
            Figure(
                5,
                "warm per-report time (2) / Chromium print",
                f"{per:.3f} s / {chrome_s:.2f} s = {ratio:.2f}",
                "<= 0.5",
                ratio <= 0.5,
            ),
        ]

    def _report_html(self, server: SandboxServer) -> tuple[str, Path]:
        """The HTML of the one-report case, built by the library as `reporter run` does."""
        from pydantic import SecretStr

        from reporter.environment import ApiSettings

        config = load_config(write_config(self.work, "one.toml", 1))
        report = config.reports[0]
        period = parse_period(self.period, today=dt.date.today())
        templates = default_templates_dir()
        options = RunOptions(
            period=period,
            out_dir=self.work / "out-html",
            templates_dir=templates,
            now=dt.datetime.now(dt.UTC),
            dry_run=True,
        )
        settings = ApiSettings(key=SecretStr(KEY), base_url=server.url)
        with MagnificClient(settings) as client:
            tables = fetch_tables(client, report, config, options)
        return compose_report(report, tables, config, options).html, templates


STATEMENTS = """[email]
from = "r@company.com"
[[reports]]
name = "whole-team"
owners = ["cfo@company.com"]
statements = {on}
statement_domains = ["company.com"]
"""


class Sink:
    """An SMTP server's handler that counts what it is sent and keeps nothing."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        return "250 OK"


def statements(work: Path, period: str, today: dt.date, users: int) -> list[Figure]:
    """(9) a 5,000-person team's statements end to end, (10) its peak memory against 50
    people's, (11) API requests with statements on and off."""
    from aiosmtpd.controller import Controller

    sink = Sink()
    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    runs: dict[int, Timed] = {}
    requests: dict[bool, int] = {}
    sent = real = 0
    try:
        for size in (50, users):
            data = SandboxData(synthetic_team(users=size, seed=7), today=today)
            with SandboxServer(data, api_key=KEY, cache_responses=True) as server:
                for on in (False, True):  # dry runs: the stand-in's answers built once
                    config = work / f"statements-{size}-{on}.toml"
                    config.write_text(STATEMENTS.format(on=str(on).lower()), encoding="utf-8")
                    before = len(server.requests)
                    run_reporter(
                        common_args(config, work / f"out-dry-{size}", period), server, work
                    )
                    requests[on] = len(server.requests) - before
                before, asked = sink.received, len(server.requests)
                args = common_args(config, work / f"out-st-{size}", period)
                args += ["--state", str(work / f"state-{size}.sqlite3")]
                runs[size] = run_reporter(args, server, work, smtp_port=port)
                sent = sink.received - before - 1  # the owner's report
                real = len(server.requests) - asked  # the sending run, statements on
                due = sum(1 for credits in _spenders(data, period).values() if credits > 0)
                if (
                    sent != due
                    or not (work / f"out-st-{size}" / period / "whole-team.pdf").exists()
                ):
                    raise SystemExit(f"{size} users: {sent} statements sent, {due} due")
    finally:
        controller.stop()
    ratio = runs[users].peak_rss / runs[50].peak_rss
    mib = {n: f"{t.peak_rss / 2**20:.0f} MiB" for n, t in runs.items()}
    return [
        Figure(
            9,
            f"{users:,} users' statements built and sent, with the report (real SMTP)",
            f"{fmt_s(runs[users].seconds)}, {sent:,} statements = users with credits",
            "<= 120 s",
            runs[users].seconds <= 120,
        ),
        Figure(
            10,
            f"peak memory, {users:,} users with statements against 50",
            f"{ratio:.2f} x ({mib[users]} against {mib[50]})",
            "<= 1.2 x",
            ratio <= 1.2,
        ),
        Figure(
            11,
            "API requests, statements on against off (dry runs; sending run)",
            f"{requests[True]} against {requests[False]}; {real}",
            "equal",
            requests[True] == requests[False] == real,
        ),
    ]


def _spenders(data: SandboxData, period: str) -> dict[str, float]:
    """Each user's credits in the month, from the stand-in's own answer."""
    year, month = map(int, period.split("-"))
    start = dt.date(year, month, 1)
    end = (dt.date(year + month // 12, month % 12 + 1, 1)) - dt.timedelta(days=1)
    server = SandboxServer(data)
    status, body = server.respond(
        {"granularity": "month", "start_date": start.isoformat(), "end_date": end.isoformat()}
    )
    assert status == 200
    credits: dict[str, float] = {}
    for bucket in json.loads(body)["data"]:
        for consumption in bucket["consumptions"]:
            for row in consumption.get("user_usages") or []:
                who = row["user_email"].lower()
                credits[who] = credits.get(who, 0.0) + row["user_credits"]
    return credits


def user_rows(data: SandboxData, period: str) -> int:
    """User rows the stand-in returns for the whole team, that month, by day."""
    year, month = map(int, period.split("-"))
    start = dt.date(year, month, 1)
    end = (dt.date(year + month // 12, month % 12 + 1, 1)) - dt.timedelta(days=1)
    _, payload = data.answer(
        {"granularity": "day", "start_date": start.isoformat(), "end_date": end.isoformat()}
    )
    return sum(
        str(c.get("user_usages", "")).count('"user_email"')
        for bucket in payload["data"]
        for c in bucket["consumptions"]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=int, nargs="+", choices=range(1, 12), metavar="N")
    parser.add_argument("--reports", type=int, default=1000, help="how many reports for (6)")
    parser.add_argument("--users", type=int, default=5000, help="team size for (4)")
    parser.add_argument("--intensity", type=float, default=40.0, help="how busy the team of (4) is")
    args = parser.parse_args(argv)
    wanted = set(args.only or range(1, 12))
    today = dt.date.today()
    period = last_complete_month(today).key
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="reporter-bench-") as tmp:
        work = Path(tmp)
        bench = Bench(work, period)
        small = SandboxServer(SandboxData(today=today), api_key=KEY, cache_responses=True)
        with small:
            if 1 in wanted:
                figures.append(bench.cold(small))
            if 2 in wanted or 5 in wanted:
                figures.append(bench.warm(small))
            if 3 in wanted:
                figures.append(bench.hundred(small))
            if 5 in wanted:
                figures.extend(bench.chromium(small))
            if 6 in wanted:
                figures.extend(bench.many(small, args.reports))
            if 8 in wanted:
                figures.append(bench.help_text())
            if 7 in wanted:
                figures.append(bench.watch(small, today))
        if 4 in wanted:
            team = synthetic_team(users=args.users, seed=7, intensity=args.intensity)
            data = SandboxData(team, today=today)
            with SandboxServer(data, api_key=KEY, cache_responses=True) as big:
                figures.append(bench.big_team(big, user_rows(data, period)))
        if wanted & {9, 10, 11}:
            figures += [f for f in statements(work, period, today, 5000) if f.number in wanted]
    figures.sort(key=lambda f: f.number)
    rows = [("", "figure", "measured", "goal", ""), *(f.row() for f in figures)]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print(f"reporter benchmark, {period}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


if __name__ == "__main__":
    main()
