"""Screenshots of the investigators' pages for the README: ``make screenshots`` (after ``make demo``).

Signs in to a running service with an investigator key in a headless Chromium (Debian's, as the
browser tests use), and saves the queue and the page of the queue's first claim as PNG files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
"""Flags for a headless Chromium on a machine with no network: without the background-networking
ones it keeps trying to reach Google's services."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--key", required=True, help="An investigator's API key.")
    p.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = p.parse_args(argv)
    from playwright.sync_api import Error, sync_playwright

    base = f"http://127.0.0.1:{args.port}"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/ui/login")
            page.fill("input[name=api_key]", args.key)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/ui/queue*")
            page.screenshot(path=str(args.out / "queue.png"), full_page=False)
            first = page.locator("a[href^='/ui/claims/']").first
            if first.count() == 0:
                print("error: the queue is empty: run make demo first", file=sys.stderr)
                return 1
            first.click()
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(1500)  # the network graph's layout settles
            page.screenshot(path=str(args.out / "claim.png"), full_page=True)
            browser.close()
    except Error as exc:
        print(f"error: {str(exc).splitlines()[0]} (is the service running on {base}?)", file=sys.stderr)
        return 1
    print(f"wrote {args.out / 'queue.png'} and {args.out / 'claim.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
