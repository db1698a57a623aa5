"""How long WeasyPrint takes to print one warm report, and where that time goes.

The HTML of benchmark (5)'s report (the stand-in team, last month) is composed
once with the current templates; then ``html_to_pdf`` prints it again and again
in this one warm process, as a printer process does, its charts read afresh
each time as each new report's are (only the logo stays cached). Prints the median
milliseconds per print (wall clock, and CPU time, which other processes on a
shared machine disturb less) over ``--rounds`` rounds of ``--prints`` prints each.
``--profile`` prints a cProfile of the prints instead (sorted by cumulative time),
``--html FILE`` keeps the composed HTML and ``--pdf FILE`` the last PDF, so the
pages can be compared before and after a change (``pdftoppm -r 60 -png``).

    .venv/bin/python benchmarks/printing.py
    .venv/bin/python benchmarks/printing.py --profile 40 --prints 10
    .venv/bin/python benchmarks/printing.py --pdf /tmp/report.pdf --variant pdf/a-3b
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

from reporter import printer
from reporter.files import default_templates_dir
from reporter.periods import last_complete_month
from reporter.sandbox import SandboxData, SandboxServer

sys.path.insert(0, str(Path(__file__).parent))
from run import KEY, Bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prints", type=int, default=10, help="prints per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is shown")
    parser.add_argument("--variant", default="pdf/ua-1", help="pdf/ua-1 (default) or pdf/a-3b")
    parser.add_argument("--profile", type=int, metavar="LINES", help="show a cProfile instead")
    parser.add_argument("--profile-out", type=Path, help="with --profile: also save it here")
    parser.add_argument("--html", type=Path, help="write the composed HTML here")
    parser.add_argument("--pdf", type=Path, help="write the last PDF here")
    parser.add_argument("--from-html", type=Path, help="print this HTML instead of composing it")
    parser.add_argument("--templates", type=Path, help="print against this templates directory")
    args = parser.parse_args()
    if args.from_html:
        html, templates = args.from_html.read_text(encoding="utf-8"), default_templates_dir()
    else:
        today = dt.date.today()
        with tempfile.TemporaryDirectory(prefix="reporter-printing-") as tmp:
            bench = Bench(Path(tmp), last_complete_month(today).key)
            with SandboxServer(SandboxData(today=today), api_key=KEY) as server:
                html, templates = bench._report_html(server)
    templates = args.templates or templates
    if args.html:
        args.html.write_text(html, encoding="utf-8")

    def once() -> bytes:
        # Each report of a run has charts of its own: none of them is in the image cache yet.
        import weasyprint

        images = printer._shared(weasyprint)[1]
        for url in [url for url in images if str(url).startswith("data:")]:
            del images[url]
        return printer.html_to_pdf(html, templates_dir=templates, variant=args.variant)

    pdf = once()  # warm: imports, fonts, the logo
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.prints):
            pdf = once()
        profiler.disable()
        if args.profile_out:
            profiler.dump_stats(args.profile_out)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)
    else:
        walls, cpus = [], []
        for _ in range(args.rounds):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.prints):
                pdf = once()
            walls.append((time.perf_counter() - wall) / args.prints)
            cpus.append((time.process_time() - cpu) / args.prints)
        for what, rounds in (("wall", walls), ("CPU", cpus)):
            each = ", ".join(f"{r * 1000:.0f}" for r in rounds)
            median = statistics.median(rounds) * 1000
            print(f"warm print ({args.variant}), {what}: {median:.0f} ms median ({each})")
        print(f"PDF size: {len(pdf) / 1024:.0f} KiB")
    if args.pdf:
        args.pdf.write_bytes(pdf)


if __name__ == "__main__":
    main()
