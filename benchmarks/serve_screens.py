"""Screenshots of the web page in headless Chromium: the flow the browser test drives, as PNG files.

Serves RUN (or ``--ranker RUN --rater RUN``) in this process on 127.0.0.1, then: searches "Star Wars"
and rates three films (ml-latest-small ids 260, 1196, 1210) at 5 stars, asks "Recommend for me", opens
"More like this" on the first result, and looks up a known user; then the recommendations again on a
390 px wide phone screen. Writes ``serving-*.png`` and ``serving-screens.md`` (command, machine, date)
to ``--out``.

    python benchmarks/serve_screens.py --ranker /tmp/knn --rater /tmp/bmf --out benchmarks/results
"""

from __future__ import annotations

import argparse
import base64
import datetime
import importlib
import json
import os
import pkgutil
import platform
import shlex
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

RATED = ("260", "1196", "1210")  # Star Wars IV, V and VI in MovieLens ids
PHONE = (390, 844)
DESKTOP = (1280, 900)


def register_models() -> None:
    """Import every model module, ranking ones included (a no-op once the package registers them)."""
    import deepmovie.models
    import deepmovie.models.ranking as ranking

    for module in pkgutil.iter_modules(ranking.__path__):
        importlib.import_module(f"{ranking.__name__}.{module.name}")
    assert deepmovie.models.MODELS


def start_server(app) -> tuple[str, object, threading.Thread]:
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            sys.exit("the server did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def browser(binary: str, driver: str):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def emulate(chrome, width: int, height: int, mobile: bool) -> None:
    chrome.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile},
    )


def capture(chrome, path: Path, width: int, full: bool = True, mobile: bool = False) -> None:
    """A PNG of the page at ``width`` CSS pixels: the whole page (``full``) or the viewport."""
    if full:
        height = chrome.execute_script("return document.documentElement.scrollHeight")
        emulate(chrome, width, int(height), mobile)
        time.sleep(0.2)
    shot = chrome.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full})
    path.write_bytes(base64.b64decode(shot["data"]))
    print(f"wrote {path}", file=sys.stderr)


def flow(chrome, url: str, out: Path) -> dict[str, object]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(chrome, 30)
    seen: dict[str, object] = {}
    emulate(chrome, *DESKTOP, mobile=False)
    chrome.get(url + "/")
    wait.until(lambda b: "ranked by" in b.find_element(By.ID, "model").text)
    search = chrome.find_element(By.ID, "search")
    search.send_keys("Star Wars")
    chrome.find_element(By.ID, "search-button").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#search-results li[data-item]"))
    for item in RATED:
        row = chrome.find_element(By.CSS_SELECTOR, f'#search-results li[data-item="{item}"]')
        row.find_element(By.CSS_SELECTOR, '.star[data-value="5"]').click()
    capture(chrome, out / "serving-1-search-and-rate.png", DESKTOP[0])

    emulate(chrome, *DESKTOP, mobile=False)
    chrome.find_element(By.ID, "recommend-new").click()
    rows = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#new-recs li.rec"))
    seen["recommended"] = [r.find_element(By.CLASS_NAME, "title").text for r in rows]
    seen["because"] = rows[0].find_element(By.CLASS_NAME, "because").text
    capture(chrome, out / "serving-2-recommendations.png", DESKTOP[0])

    emulate(chrome, *DESKTOP, mobile=False)
    rows[0].find_element(By.CLASS_NAME, "more-like").click()
    similar = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#new-recs .similar li"))
    seen["more_like_this"] = [s.find_element(By.CLASS_NAME, "title").text for s in similar]
    capture(chrome, out / "serving-3-more-like-this.png", DESKTOP[0])

    emulate(chrome, *DESKTOP, mobile=False)
    chrome.find_element(By.ID, "user").send_keys("1")
    chrome.find_element(By.ID, "user-button").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#user-recs li.rec"))
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#user-history li"))
    capture(chrome, out / "serving-4-known-user.png", DESKTOP[0])

    emulate(chrome, *PHONE, mobile=True)
    chrome.execute_script("document.getElementById('new-recs').scrollIntoView()")
    time.sleep(0.3)
    seen["phone_scroll_width"] = chrome.execute_script("return document.documentElement.scrollWidth")
    capture(chrome, out / "serving-5-phone-390px.png", PHONE[0], full=False, mobile=True)
    return seen


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores, load average {load}"


def run_line(path: Path) -> str:
    summary_file = path / "summary.json"
    if not summary_file.is_file():
        return f"`{path}`"
    summary = json.loads(summary_file.read_text())
    figures = ", ".join(
        f"{k} {v:.4f}"
        for k, v in summary.items()
        if k in ("test_rmse", "test_ndcg@10", "test_hr@10") and isinstance(v, float)
    )
    return f"`{summary.get('model')}` on {summary.get('dataset', '?')} ({figures})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", help="a run directory (or use --ranker)")
    parser.add_argument("--ranker", type=Path, help="the run whose scores order the list")
    parser.add_argument("--rater", type=Path, help="a rating run on the same data (predicted stars)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--note", action="append", default=[], help="a line for the .md (repeatable)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    args = parser.parse_args()
    if (args.run is None) == (args.ranker is None):
        parser.error("give RUN or --ranker RUN")
    register_models()
    from deepmovie.serving.api import create_app, load_recommender

    ranker = args.run or args.ranker
    recommender = load_recommender(ranker, args.rater)
    url, server, thread = start_server(create_app(recommender))
    args.out.mkdir(parents=True, exist_ok=True)
    chrome = browser(args.chromium, args.chromedriver)
    try:
        version = chrome.capabilities.get("browserVersion", "?")
        seen = flow(chrome, url, args.out)
    finally:
        chrome.quit()
        server.should_exit = True
        thread.join(10)
    given = [str(args.run)] if args.run else ["--ranker", str(args.ranker)]
    given += ["--rater", str(args.rater)] if args.rater else []
    command = shlex.join(["python", "benchmarks/serve_screens.py", *given, "--out", str(args.out)])
    files = sorted(p.name for p in args.out.glob("serving-*.png"))
    lines = [
        "# Serving: the web page in headless Chromium",
        "",
        f"- command: `{command}`",
        f"- ranker: {run_line(ranker)}",
        f"- rater: {run_line(args.rater) if args.rater else 'none'}",
        f"- machine: {machine()}; Chromium {version} (headless), Python {platform.python_version()}",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        *(f"- {note}" for note in args.note),
        "",
        'The flow: search "Star Wars", rate Episodes IV, V and VI (ids 260, 1196, 1210) at 5 stars, '
        '"Recommend for me" (a new user, folded in without retraining), "More like this" on the first '
        "result, then user 1 looked up; the last screenshot is the recommendations on a 390 px wide "
        "phone screen (2x pixels).",
        "",
        "| file | what it shows |",
        "|---|---|",
        "| `serving-1-search-and-rate.png` | the search results with three films rated 5 stars |",
        "| `serving-2-recommendations.png` | the recommendations: genres, predicted stars, "
        '"because you liked ..." |',
        '| `serving-3-more-like-this.png` | "More like this" opened under the first recommendation |',
        "| `serving-4-known-user.png` | a known user's recommendations and ratings |",
        "| `serving-5-phone-390px.png` | the recommendations at phone width (390 px) |",
        "",
        f"Recommended (top {len(seen['recommended'])}): " + "; ".join(seen["recommended"]) + ".",
        "",
        f'First result\'s explanation: "{seen["because"]}".',
        "",
        "More like the first result: " + "; ".join(seen["more_like_this"]) + ".",
        "",
        f"Page width on the 390 px screen: {seen['phone_scroll_width']} px"
        + (" (no sideways scrolling)." if seen["phone_scroll_width"] <= PHONE[0] else " (too wide)."),
        "",
        f"Files: {', '.join(files)}.",
    ]
    (args.out / "serving-screens.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'serving-screens.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
