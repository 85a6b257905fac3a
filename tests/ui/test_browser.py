"""The issue's whole flow in a real browser: Debian's Chromium driven by
Playwright, against the API process (uvicorn) and a real Celery worker.

Sign in, create a dataset, upload a CSV and watch the progress bar finish,
page through the data, upload an edited CSV, open compare and find exactly
the edited cells highlighted, tag, branch, upload on the branch, merge, see
the merge in history. Also: keyboard-only sign-in, the filter box, a phone-
width viewport and the dark theme.

A screenshot of each page is taken; they go to docs/screenshots/ when
``DSA_UI_SCREENSHOTS=1`` (``make screenshots``), else to a temporary
directory, so a test run leaves the tree clean.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import ADMIN_PASSWORD

CHROMIUM = os.environ.get("DSA_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ROWS = 1500
EDITS = {41: ("qty", 4242), 777: ("name", "renamed-777"), 1203: ("qty", -1)}  # row index → cell


def _rows() -> list[list[Any]]:
    return [[i, f"item{i}", i * 10] for i in range(1, ROWS + 1)]


def _csv(rows: list[list[Any]]) -> bytes:
    return ("id,name,qty\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)).encode()


@pytest.fixture(scope="module")
def shots() -> Iterator[Path]:
    if os.environ.get("DSA_UI_SCREENSHOTS"):
        out = ROOT / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        yield out
    else:
        tmp = Path(tempfile.mkdtemp(prefix="dsa-shots-"))
        yield tmp
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: run `make browser` (apt-get install chromium) "
            "or point DSA_CHROMIUM at a Chromium binary",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _context(browser: Any, api_url: str, **kw: Any) -> Any:
    ctx = browser.new_context(base_url=api_url, viewport={"width": 1280, "height": 800}, **kw)
    ctx.set_default_timeout(30_000)
    return ctx


def _sign_in_with_keyboard(page: Any) -> None:
    page.goto("/datasets")
    page.get_by_role("link", name="Sign in").click()
    page.wait_for_url(re.compile(r"/signin"))
    # the username field has focus (autofocus: wait for it, a loaded machine
    # may type before the page has applied it); the rest is Tab and Enter
    expect(page.locator("#username")).to_be_focused()
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/datasets$"))
    assert page.get_by_text("Signed in as").is_visible()


def _upload(page: Any, tmp: Path, name: str, content: bytes, message: str) -> str:
    """Pick a file and upload it; watch the progress bar finish; returns the new commit id."""
    path = tmp / name
    path.write_bytes(content)
    page.get_by_label(re.compile("Drop a CSV")).set_input_files(str(path))
    page.get_by_label("Commit message").fill(message)
    page.get_by_role("button", name="Upload and import").click()
    status = page.locator("#upload-status")
    status.wait_for(state="visible")
    outcome = page.locator("#job-outcome")
    outcome.wait_for()
    assert outcome.get_attribute("data-state") == "succeeded", outcome.inner_text()
    assert page.locator("#upload-status progress").evaluate("p => p.value") == 1
    assert "Done" in page.locator("[data-progress-text]").inner_text()
    return str(page.locator("#new-commit").get_attribute("href")).rsplit("/", 1)[1]


def test_the_issue_flow_in_chromium(browser: Any, api_url: str, shots: Path) -> None:
    ctx = _context(browser, api_url)
    page = ctx.new_page()
    # the pages' Content-Security-Policy (no inline script): nothing it blocks
    blocked: list[str] = []
    page.on(
        "console",
        lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
    )
    tmp = Path(tempfile.mkdtemp(prefix="dsa-ui-"))
    try:
        _flow(page, tmp, shots)
        _phone_and_dark(browser, api_url, shots, page.url)
        assert blocked == [], blocked
    finally:
        ctx.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _flow(page: Any, tmp: Path, shots: Path) -> None:
    page.goto("/signin")
    page.screenshot(path=shots / "signin.png")
    _sign_in_with_keyboard(page)

    # create a dataset
    name = f"sales-{time.time_ns() % 10**8}"
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Description").fill("Items and quantities, one row per item")
    page.get_by_role("button", name="Create dataset").click()
    page.wait_for_url(re.compile(r"/datasets/[0-9a-f-]{36}$"))
    dataset_url = page.url
    assert page.get_by_text("This version has no tables yet").is_visible()

    # upload a CSV and watch the progress bar finish
    page.get_by_role("link", name="Upload a file").click()
    page.screenshot(path=shots / "upload.png")
    _upload(page, tmp, "items.csv", _csv(_rows()), "First version")
    page.screenshot(path=shots / "upload-done.png")

    # page through the data
    page.get_by_role("link", name="View the data").click()
    assert page.locator("#rowcount").inner_text().startswith(f"{ROWS:,} rows")
    assert page.locator("#grid tbody tr").count() == 100
    page.get_by_role("link", name="Next ›").first.click()
    expect(page.locator("#rowcount")).to_contain_text("101–200")
    assert page.locator("#grid tbody tr").first.locator("td").nth(2).inner_text() == "item101"
    page.keyboard.press("n")  # the keyboard shortcut for the next page
    expect(page.locator("#rowcount")).to_contain_text("201–300")
    page.get_by_label("Jump to row").first.fill("1234")
    page.get_by_label("Jump to row").first.press("Enter")
    expect(page.locator("#rowcount")).to_contain_text("1,234–")
    first = page.locator("#grid tbody tr").first.locator("td")
    assert first.nth(0).inner_text() == "1,234" and first.nth(2).inner_text() == "item1234"
    # column selection and the filter box
    page.locator("details.columns > summary").click()
    page.locator('input[name="col"][value="name"]').uncheck()
    page.get_by_label("Filter").fill("qty >= 14900")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#rowcount")).to_contain_text("matching")
    assert page.locator("#rowcount").inner_text().startswith("11 matching rows")
    headers = page.locator("#grid thead th").all_inner_texts()
    assert [h.split("\n")[0] for h in headers] == ["#", "id", "qty"]
    page.screenshot(path=shots / "data-filtered.png")
    page.get_by_label("Filter").fill("qty >>> 1")
    page.get_by_role("button", name="Apply").click()
    page.locator("#filter-problem").wait_for()
    page.goto(dataset_url)
    page.screenshot(path=shots / "data.png")
    # the statistics page: a card per column with its chart (computed at the
    # request if the worker has not yet); then the grid's headers draw them
    page.locator("#stats-link").click()
    expect(page.locator(".stat")).to_have_count(3)
    assert page.locator("#stats-summary").inner_text().startswith(f"{ROWS:,} rows")
    qty = page.locator(".stat", has_text="qty")
    assert qty.locator("svg.chart rect").count() == 20
    assert "1,500" in qty.locator("dl").inner_text()  # distinct values
    page.screenshot(path=shots / "stats.png", full_page=True)
    page.goto(dataset_url)
    # id and qty (names are all distinct: no histogram, no most frequent values)
    assert page.locator("#grid thead svg.spark").count() == 2

    # upload an edited CSV, open compare, find exactly the edited cells highlighted
    edited = _rows()
    for i, (col, value) in EDITS.items():
        edited[i][["id", "name", "qty"].index(col)] = value
    page.get_by_role("link", name="Upload", exact=True).click()
    _upload(page, tmp, "items.csv", _csv(edited), "Fix three cells")
    page.get_by_role("link", name="Compare with the previous version").click()
    page.wait_for_url(re.compile(r"/compare/[0-9a-f]{64}\.\.\.[0-9a-f]{64}"))
    assert page.locator("#n-modified").inner_text() == "3"
    assert page.locator("#n-added").inner_text() == "0"
    assert page.locator("#n-removed").inner_text() == "0"
    changed = page.locator("#changes td.changed")
    assert changed.count() == len(EDITS)
    got = sorted(
        (cell.locator("del").inner_text(), cell.locator("ins").inner_text())
        for cell in changed.all()
    )
    base = _rows()
    want = sorted(
        (str(base[i][["id", "name", "qty"].index(col)]), str(value))
        for i, (col, value) in EDITS.items()
    )
    assert got == want
    rows = page.locator("#changes tbody tr")
    assert [r.get_attribute("class") for r in rows.all()] == ["modify"] * 3
    # how the columns' statistics moved: qty's min and mean, drawn on one axis
    moved = page.locator("#stats-diff #sd-qty")
    expect(moved).to_be_visible()
    assert moved.locator("td.changed").count() == 2  # min, mean
    assert "−1" in moved.locator("td.changed").first.inner_text().replace("-", "−")
    assert moved.locator(".overlay .head rect").count() == 20
    permalink = page.locator("#permalink").get_attribute("href")
    page.screenshot(path=shots / "compare.png", full_page=True)
    page.goto(permalink)  # the link reproduces the view
    assert page.locator("#changes td.changed").count() == len(EDITS)

    # tag and branch
    page.get_by_role("link", name="Branches & tags").click()
    page.get_by_label("Name").nth(1).fill("v2")  # the tag form
    page.get_by_label("Message").fill("Three cells fixed")
    page.get_by_role("button", name="Create tag").click()
    page.get_by_text("Tag v2 created.").wait_for()
    page.get_by_label("Name").first.fill("corrections")
    page.get_by_role("button", name="Create branch").click()
    page.get_by_text("Branch corrections created.").wait_for()
    assert page.locator('#tags tr[data-ref="v2"]').count() == 1
    page.screenshot(path=shots / "branches.png", full_page=True)

    # upload on the branch
    page.locator('#branches tr[data-ref="corrections"] a').first.click()
    page.get_by_role("link", name="Upload", exact=True).click()
    assert page.get_by_label("Branch", exact=True).input_value() == "corrections"
    on_branch = [list(r) for r in edited]
    on_branch[9][2] = 999_999
    on_branch.append([ROWS + 1, "new-on-branch", 1])
    _upload(page, tmp, "items.csv", _csv(on_branch), "Correct row 10, add one")
    # a commit on main too, so the merge is a real three-way merge
    page.goto(dataset_url + "/upload?branch=main")
    on_main = [list(r) for r in edited]
    on_main[99][1] = "main-edit-100"
    _upload(page, tmp, "items.csv", _csv(on_main), "Rename item 100")

    # merge the branch into main
    page.goto(dataset_url + "/branches")
    page.get_by_role("link", name="Merge into main").click()
    assert page.get_by_label(re.compile("^Merge")).input_value() == "corrections"
    page.screenshot(path=shots / "merge.png")
    page.get_by_role("button", name="Merge", exact=True).click()
    page.locator("#merge-result").wait_for()
    assert "Merged" in page.locator("#merge-result").inner_text()

    # see the merge in history
    page.get_by_role("link", name="See the history of main").click()
    merge_row = page.locator("#history tr.merge")
    assert merge_row.count() == 1
    assert "Merge corrections into main" in merge_row.inner_text()
    assert page.locator("#history tbody tr").count() == 6  # root, v1, v2, branch, main, merge
    assert page.locator("#history td.g svg").count() == 6
    page.screenshot(path=shots / "history.png", full_page=True)
    merge_row.get_by_role("link").nth(0).click()
    page.locator("#commit-id").wait_for()
    assert page.locator("#n-modified").inner_text() == "1"  # row 10, from the branch
    assert page.locator("#n-added").inner_text() == "1"
    page.screenshot(path=shots / "commit.png", full_page=True)

    # the merged data
    page.goto(dataset_url + "?row=10&limit=25")
    assert page.locator("#grid tbody tr").first.locator("td").nth(3).inner_text() == "999999"
    page.goto(dataset_url + "/settings")
    assert page.get_by_label("Type").count() == 1  # the delete form's confirmation box
    page.screenshot(path=shots / "settings.png", full_page=True)

    # tags and a readme (Markdown, sanitised: its script never runs)
    page.get_by_label("Tags").fill("inventory, weekly")
    page.get_by_label("Readme").fill(
        "## Columns\n\n- **qty**: units in stock\n\n<script>window.pwned = 1</script>"
    )
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Settings saved.").wait_for()
    page.goto(dataset_url)
    readme = page.locator("#readme")
    assert readme.locator("h2").inner_text() == "Columns"
    assert readme.locator("script").count() == 0
    assert page.evaluate("window.pwned") is None

    # the list is a search: by a column's name, with the match shown; facets narrow it
    page.goto("/datasets")
    page.get_by_label("Search datasets").fill("qty")
    page.get_by_label("Search datasets").press("Enter")
    row = page.locator("#datasets tbody tr", has_text=name)
    expect(row).to_have_count(1)
    matches = row.locator(".match").all_inner_texts()
    assert "column qty" in matches, matches
    assert row.locator(".match mark").first.inner_text() == "qty"
    page.locator("#facet-tag").get_by_role("link", name="inventory").click()
    expect(page.locator("#found")).to_contain_text("filtered")
    expect(page.locator("#datasets tbody tr", has_text=name)).to_have_count(1)
    page.screenshot(path=shots / "search.png", full_page=True)

    # an API token: created from the header's link, shown once
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("browser test")
    page.get_by_role("button", name="Create token").click()
    assert page.locator("#t-value").input_value().startswith("dsa_")
    assert page.get_by_role("button", name="Copy").is_visible()  # enhanced: clipboard API
    assert page.get_by_role("button", name="Revoke token browser test").count() == 1
    page.screenshot(path=shots / "tokens.png", full_page=True)

    # an unknown page: the site's 404, with a way back
    page.goto(dataset_url + "/nope")
    assert page.locator("h1").inner_text() == "404 · Not found"
    page.screenshot(path=shots / "not-found.png")
    page.get_by_role("link", name="see all datasets").click()
    page.screenshot(path=shots / "datasets.png")


def _phone_and_dark(browser: Any, api_url: str, shots: Path, last_url: str) -> None:
    """The same session at phone width, and in the dark theme."""
    ctx = _context(browser, api_url)
    page = ctx.new_page()
    _sign_in_with_keyboard(page)
    page.get_by_role("link", name=re.compile("^sales-")).first.click()
    dataset_url = page.url
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(dataset_url + "/history")
    # a control that submits its form when changed (data-autosubmit, app.js)
    page.get_by_label("First parents only").check()
    page.wait_for_url(re.compile(r"first_parent=true"))
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the history page scrolls sideways at phone width ({width}px)"
    page.screenshot(path=shots / "history-phone.png", full_page=True)
    page.goto(dataset_url)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=shots / "data-phone.png")
    ctx.close()

    dark = _context(browser, api_url, color_scheme="dark")
    page = dark.new_page()
    _sign_in_with_keyboard(page)
    page.get_by_role("link", name=re.compile("^sales-")).first.click()
    page.get_by_role("link", name="History").first.click()
    page.locator("#history tr").nth(2).get_by_role(
        "link", name=re.compile("^Compare .* with its parent")
    ).click()
    page.locator("#summary").wait_for()
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(13, 17, 23)", bg
    page.screenshot(path=shots / "compare-dark.png", full_page=True)
    dark.close()
