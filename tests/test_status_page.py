"""The status page in a real browser: Chromium from the system, driven by Playwright.

Signs in (the browser signs with WebCrypto; the password never leaves it), opens every view and
checks its numbers against what the server was given, on a desktop and on a phone's screen; a
cross-site form post is refused. A failing test saves a screenshot in a temporary directory and
prints its path. Without Chromium (or Playwright) the tests skip, except under CI=true, where
they fail (`.ci/run` installs Chromium).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from server_process import RO_PASSWORD, RW_PASSWORD, ServerProcess
from status_data import ENTRIES, SHA, VIEW_PASSWORD, populate, rw, start_ui, status_settings

from pairio._version import __version__

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _missing(what: str) -> None:
    message = f"{what} (apt-get install chromium; pip install playwright)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed")
    if CHROMIUM is None:
        _missing("Chromium is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("status-page"), status_settings()) as s:
        populate(s)
        yield s


@contextlib.contextmanager
def screenshot_on_failure(page, name: str) -> Iterator[None]:
    """Save a screenshot of ``page`` if the block fails, and say where."""
    try:
        yield
    except Exception:
        path = os.path.join(tempfile.mkdtemp(prefix="pairio-status-"), f"{name}.png")
        with contextlib.suppress(Exception):  # the page may be gone: the failure itself matters
            page.screenshot(path=path, full_page=True)
            print(f"screenshot of the failure: {path}")
        raise


@pytest.fixture
def page(browser, request):
    context = browser.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.sent = []  # every request the page sends: URL, headers and body
    page.on("request", lambda r: page.sent.append((r.url, str(r.headers), r.post_data or "")))
    page.csp_errors = []
    page.on("console", lambda m: page.csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    yield page
    context.close()


def sign_in(page, server, channel: str, password: str) -> None:
    page.goto(server.url + "/")
    page.fill("#channel", channel)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_selector("header .who")


def stat(page, name: str) -> str:
    return page.inner_text(f'[data-stat="{name}"]')


def test_sign_in_and_every_view_shows_the_stores_numbers(page, server):
    with screenshot_on_failure(page, "every-view"):
        sign_in(page, server, "lab-rw", RW_PASSWORD)
        assert "channel lab-rw" in page.inner_text("header .who")
        # Overview: 4 entries, their bytes, 3 hits and 4 misses today.
        assert stat(page, "entries") == "4"
        assert stat(page, "bytes") == f"{sum(r['size'] for _, _, r in ENTRIES) / 1000:.1f} KB"
        assert stat(page, "hit-rate-today") == f"{100 * 3 / 7:.1f}%"
        assert stat(page, "saved-today") == "1.4 min"  # 2 hits of 12 s and 1 of 60 s
        assert page.locator("#chart rect").count() >= 2
        assert page.csp_errors == []

        page.click("header a:has-text('Top steps')")
        page.wait_for_selector("#steps")
        rows = page.locator("#steps tbody tr")
        assert [rows.nth(i).get_attribute("data-function") for i in range(rows.count())] == [
            "steps.sort_units", "steps.detect", "secret.train_model"]
        page.click("text=by compute spent")
        assert page.locator("#steps tbody tr").first.get_attribute("data-function") == "secret.train_model"
        detect = page.locator('#steps tr[data-function="steps.detect"]')
        assert detect.locator('[data-col="computed"]').inner_text() == "22 s"
        assert detect.locator('[data-col="size"]').inner_text() == "4.0 KB"
        assert detect.locator('[data-col="entries"]').inner_text() == "2"

        page.click("header a:has-text('Recent misses')")
        reason = page.locator(f'#misses tr[data-key="{"b" * 40}"] .reason').inner_text()
        assert "argument `threshold` differs (5 -> 7)" in reason

        page.click(f'#misses tr[data-key="{"a" * 40}"] a')
        page.wait_for_selector("#record")
        assert page.inner_text('[data-field="function"]') == "steps.detect"
        assert page.inner_text('[data-field="hits"]') == "2"
        assert "steps.detect" in page.inner_text("#lineage")
        assert f"pairio load sha1://{SHA[0]}" in page.inner_text("#fetch")

        page.click("header a:has-text('In flight')")
        leases = page.inner_text("#leases")
        assert "gpu-7" in leases and "secret.train_model" in leases and "lab-2" in leases

        page.click("header a:has-text('Health')")
        assert page.inner_text("#version") == __version__
        assert "All backends" in page.inner_text("#status")
        assert page.csp_errors == []

        # The password never left the browser: in no URL, header or body it sent.
        for url, headers, body in page.sent:
            assert RW_PASSWORD not in url + headers + body


def test_sign_in_with_a_wrong_password_is_refused_on_the_page(page, server):
    with screenshot_on_failure(page, "wrong-password"):
        page.goto(server.url + "/")
        page.fill("#channel", "lab-rw")
        page.fill("#password", "not-the-password")
        page.click("button[type=submit]")
        page.wait_for_selector("#signin-error:has-text('refused')")
        assert page.locator("[data-stat]").count() == 0


def test_a_read_only_channel_sees_only_its_collections_and_signs_out(page, server):
    with screenshot_on_failure(page, "read-only"):
        sign_in(page, server, "public-ro", RO_PASSWORD)
        assert stat(page, "entries") == "3"
        for path in ("/steps", "/misses", "/leases", f"/entry?collection=other&key={'d' * 40}"):
            page.goto(server.url + path)
            text = page.inner_text("body")
            assert "secret" not in text and "gpu-7" not in text, path
        page.goto(server.url + "/")
        page.click("#signout")
        page.wait_for_selector("#signin")
        assert page.locator("[data-stat]").count() == 0


def test_a_view_only_channel_looks_and_cannot_write(page, server):
    with screenshot_on_failure(page, "view-only"):
        sign_in(page, server, "viewer", VIEW_PASSWORD)
        assert "(view only)" in page.inner_text("header .who")
        assert stat(page, "entries") == "3"
        # Its signed-in page cannot write either: the session is no signature.
        status = page.evaluate("""async () => (await fetch("/api/v1/delete", {method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify({collection: "spikes", key: "a".repeat(40)})})).status""")
        assert status == 401
    assert rw(server, "/api/v1/get", {"collection": "spikes", "key": "a" * 40}).json()["value"] == SHA[0]


def test_a_cross_site_form_post_is_refused(page, server):
    with screenshot_on_failure(page, "csrf"):
        sign_in(page, server, "lab-rw", RW_PASSWORD)
        evil = (f'<form id="f" method="POST" action="{server.url}/api/v1/delete" enctype="text/plain">'
                f'<input name=\'{{"collection":"spikes","key":"{"a" * 40}","x":"\' value=\'"}}\'></form>'
                '<script>document.getElementById("f").submit()</script>')
        page.route("http://evil.test/**", lambda route: route.fulfill(body=evil, content_type="text/html"))
        with page.expect_navigation(url=f"{server.url}/api/v1/delete"):
            page.goto("http://evil.test/")
        assert "authentication failed" in page.inner_text("body")
    assert rw(server, "/api/v1/get", {"collection": "spikes", "key": "a" * 40}).json()["value"] == SHA[0]
    assert len(ENTRIES) == 4


def test_the_page_fits_a_phone(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, device_scale_factor=2)
    page = context.new_page()
    try:
        with screenshot_on_failure(page, "phone"):
            sign_in(page, server, "lab-rw", RW_PASSWORD)
            for path in ("/", "/steps", "/misses", "/leases", f"/entry?collection=spikes&key={'a' * 40}"):
                page.goto(server.url + path)
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 1, (path, overflow)
    finally:
        context.close()


def test_pairio_ui_in_the_browser_shows_the_local_store(browser, tmp_path, pairio_home):
    import pairio as pa

    @pa.cached
    def smooth(width):
        return [width] * 3

    smooth(3), smooth(5), smooth(3)
    pa.deferred.drain_all()
    process, url = start_ui(tmp_path, pairio_home)
    context = browser.new_context()
    page = context.new_page()
    try:
        with screenshot_on_failure(page, "pairio-ui"):
            page.goto(url)
            assert "token=" not in page.url  # moved into a cookie
            assert stat(page, "entries") == str(len(pa.entries())) == "2"
            assert stat(page, "hit-rate-today") == f"{100 / 3:.1f}%"
            page.click("header a:has-text('Recent misses')")
            assert "argument `width` differs (3 -> 5)" in page.inner_text("#misses")
            page.click("header a:has-text('Top steps')")
            assert page.locator("#steps tbody tr").first.get_attribute("data-function") == smooth.name
    finally:
        context.close()
        process.terminate()
        process.wait(10)


def test_without_javascript_the_sign_in_form_sends_no_password(browser, server):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    sent = []
    page.on("request", lambda r: sent.append(r.url + str(r.headers) + (r.post_data or "")))
    try:
        with screenshot_on_failure(page, "no-javascript"):
            page.goto(server.url + "/")
            page.fill("#channel", "lab-rw")
            page.fill("#password", RW_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            assert sent and not any(RW_PASSWORD in s or "lab-rw" in s for s in sent)
            assert page.locator("[data-stat]").count() == 0
    finally:
        context.close()
