"""Where one report's time goes: each stage of a warm report, in one process.

Ten reports of the stand-in team, fetched once, then built one after another the
way a run builds them (``render_report`` prints in this process here, so each
stage is timed alone); prints milliseconds per report, stage by stage.

    .venv/bin/python benchmarks/stages.py
"""

from __future__ import annotations

import collections
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from reporter import charts
from reporter.config import load_config
from reporter.environment import ApiSettings
from reporter.files import default_templates_dir
from reporter.jobs import RunOptions, build, fetch_tables, messages, pipeline
from reporter.magnific import MagnificClient
from reporter.periods import last_complete_month
from reporter.sandbox import SandboxData, SandboxServer

sys.path.insert(0, str(Path(__file__).parent))
from run import KEY, write_config

spent: collections.Counter[str] = collections.Counter()


def timed(module: Any, name: str, label: str) -> None:
    """Wrap ``module.name`` so that its time adds up under ``label``."""
    original: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - start

    setattr(module, name, wrapper)


def main() -> None:
    timed(build, "print_job", "PDF print (WeasyPrint)")
    timed(build, "compose_report", "charts and HTML")
    timed(charts, "render_svg", "  of which the charts (vl-convert)")
    timed(charts, "svg_to_png", "the email's chart as PNG")
    timed(messages, "compose", "the email message")
    timed(build, "write_csv", "the CSV")
    today = dt.date.today()
    with tempfile.TemporaryDirectory(prefix="reporter-stages-") as tmp:
        work = Path(tmp)
        config = load_config(write_config(work, "eleven.toml", 11))
        options = RunOptions(
            period=last_complete_month(today),
            out_dir=work / "out",
            templates_dir=default_templates_dir(),
            now=dt.datetime.now(dt.UTC),
            dry_run=True,
        )
        with SandboxServer(SandboxData(today=today), api_key=KEY) as server:
            settings = ApiSettings(key=SecretStr(KEY), base_url=server.url)
            with MagnificClient(settings) as client:
                start = time.perf_counter()
                fetched = [(r, fetch_tables(client, r, config, options)) for r in config.reports]
                fetching = (time.perf_counter() - start) / len(fetched)
        for i, (report, tables) in enumerate(fetched):
            if i == 1:  # the first report warmed everything up
                spent.clear()
                start = time.perf_counter()
            built = build.render_report(report, tables, config, options)
            pipeline.finish(built, config, options, ["owner@company.com"], None)
        per = (time.perf_counter() - start) / (len(fetched) - 1)
    print(f"one warm report, all stages in one process: {per * 1000:.0f} ms")
    for label, seconds in spent.most_common():
        print(f"  {label:36s} {seconds / (len(fetched) - 1) * 1000:5.0f} ms")
    print(f"  {'fetch and aggregate (fetch threads)':36s} {fetching * 1000:5.0f} ms")


if __name__ == "__main__":
    main()
