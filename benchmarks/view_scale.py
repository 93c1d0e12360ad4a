"""File size, build time and filter latency of the dialogue viewer (`python -m agents.view`) at scale.

    python benchmarks/view_scale.py RUN [--steps 50 --per-step 32 64] [--evaluation EVAL_FOLDER]

The large runs are synthesized from a small real run's records by replication: step s of the
synthetic run holds the records of real step ((s - 1) mod n) + 1, each copied as often as needed
to reach `--per-step` dialogues (the copies get new seeds). Records keep their real size and text;
the gzip ratio is a little better than a real run's would be, since copies compress well, so the
"raw JSONL" column says how much text went in. Filter latency is measured in headless Chromium
(the system chromium and /usr/bin/chromedriver): the time from changing a filter to the list
being redrawn, median of 5, for a hidden-intention filter and a free-text filter.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from agents.view.cli import write_view
from sage_gym.transcripts import read_jsonl

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1000")

MEASURE = """
const [name, value] = arguments;
const select = document.querySelector(`[data-filter="${name}"]`);
const times = [];
for (let i = 0; i < 5; i++) {
  for (const v of ["", value]) {
    const t0 = performance.now();
    select.value = v;
    select.dispatchEvent(new Event("change"));
    if (v) times.push(performance.now() - t0);
  }
}
times.sort((a, b) => a - b);
return [times[2], document.getElementById("count").textContent];
"""


MEASURE_TEXT = """
const [word] = arguments;
const times = [];
for (let i = 0; i < 5; i++) {
  for (const v of ["", word]) {
    const t0 = performance.now();
    history.replaceState(null, "", v ? "#q=" + encodeURIComponent(v) : "#");
    window.dispatchEvent(new HashChangeEvent("hashchange"));
    if (v) times.push(performance.now() - t0);
  }
}
const first = times[0];
times.sort((a, b) => a - b);
return [times[2], document.getElementById("count").textContent + ` (first use, building the text index: ${first.toFixed(0)} ms)`];
"""


def synthesize(run: Path, out: Path, steps: int, per_step: int) -> Path:
    records = list(read_jsonl(run / "transcripts.jsonl"))
    by_step: dict[int, list[dict]] = {}
    for r in records:
        by_step.setdefault(r["step"], []).append(r)
    real = sorted(by_step)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "metrics.jsonl"):
        if (run / name).exists():
            shutil.copy(run / name, out / name)
    with (out / "transcripts.jsonl").open("w") as handle:
        for step in range(1, steps + 1):
            source = by_step[real[(step - 1) % len(real)]]
            for i in range(per_step):
                record = dict(source[i % len(source)], step=step, dialogue=i, seed=source[i % len(source)]["seed"] + i // len(source))
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return out


def filter_latency(page: Path, text: str) -> list[tuple[str, float, str]]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    profile = tempfile.mkdtemp()
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(page.resolve().as_uri())
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.ready"))
        opened = float(driver.execute_script("return document.body.dataset.openMs")) / 1000
        intention = driver.execute_script("return document.querySelector('[data-filter=intention] option:nth-child(2)').value")
        rows = [("open (decode + first render)", opened * 1000, "")]
        rows.append(("filter: hidden intention", *driver.execute_script(MEASURE, "intention", intention)))
        rows.append(("filter: free text", *driver.execute_script(MEASURE_TEXT, text)))
        return rows
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a small real training run folder")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--per-step", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--evaluation", type=Path, help="an evaluation folder to measure too (e.g. 96 scenarios x 3 trials)")
    parser.add_argument("--text", default="sounds", help="the free-text filter's word")
    args = parser.parse_args()
    folders = []
    with tempfile.TemporaryDirectory() as tmp:
        for per_step in args.per_step:
            folders.append((f"training {args.steps} x {per_step} (synthesized)", synthesize(args.run, Path(tmp) / f"run-{per_step}", args.steps, per_step)))
        if args.evaluation:
            folders.append((f"evaluation {args.evaluation.name}", args.evaluation))
        print("| folder | dialogues | raw JSONL | page | build | open | filter: intention | filter: text |")
        print("|---|---|---|---|---|---|---|---|")
        for label, folder in folders:
            started = time.perf_counter()
            page = write_view([folder], Path(tmp) / f"{folder.name}.html")
            build = time.perf_counter() - started
            raw = (folder / "transcripts.jsonl").stat().st_size
            n = sum(1 for _ in (folder / "transcripts.jsonl").open())
            rows = filter_latency(page, args.text)
            print(f"| {label} | {n} | {raw / 1e6:.1f} MB | {page.stat().st_size / 1e6:.2f} MB | {build:.1f} s | {rows[0][1]:.0f} ms | {rows[1][1]:.1f} ms | {rows[2][1]:.1f} ms; {rows[2][2]} |")


if __name__ == "__main__":
    main()
