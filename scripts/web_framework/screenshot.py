"""The README's screenshot of the page (docs/web_page.png): a running ``python web.py``, one photo, headless Chromium.

    python web.py --port 8765 &
    python scripts/web_framework/screenshot.py http://127.0.0.1:8765 docs/web_page.png ../shared/media/obama_and_biden.jpg
"""

import sys

from playwright.sync_api import sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=FLAGS)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(sys.argv[1])
    page.get_by_text("Photos: drop them here").wait_for()
    page.locator("input[type=file]").set_input_files(sys.argv[3:])
    page.get_by_text("Download the JSON record").first.wait_for(timeout=60_000)
    page.locator("table tbody tr").first.wait_for()
    page.wait_for_timeout(1500)
    page.screenshot(path=sys.argv[2], clip={"x": 60, "y": 100, "width": 1160, "height": 840})
    browser.close()
