"""The web status page in a real browser: Debian's chromium, driven by Playwright.

No browser is downloaded: Playwright drives /usr/bin/chromium (``scripts/test`` installs it
when run as root). Each test opens the page of a real manager with its token and checks what
a person would see.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ManagerHandle, wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
TIMEOUT = 30_000  # ms, for Playwright's waits


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium "
                    "(scripts/test installs it when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(ignore_https_errors=True,
                                  viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT)
    p = context.new_page()
    p.errors = []  # type: ignore[attr-defined]
    p.on("pageerror", lambda e: p.errors.append(str(e)))
    yield p
    context.close()
    assert p.errors == [], p.errors


def rest(m: ManagerHandle) -> httpx.Client:
    return m.http()


def add(m: ManagerHandle, jobs: list[dict[str, Any]], **params: str) -> list[dict[str, Any]]:
    with rest(m) as c:
        r = c.post("/rest/v1/jobs/", content=orjson.dumps(jobs), params=params)
    assert r.status_code == 201, r.text
    return r.json()


def states(m: ManagerHandle, group: str) -> list[dict[str, Any]]:
    with rest(m) as c:
        return c.get(f"/rest/v1/jobs/{group}").json()


def open_page(page: Any, m: ManagerHandle, fragment: str = "") -> None:
    from playwright.sync_api import expect

    page.goto(f"{m.url}/?token={m.token}{fragment}")
    expect(page.locator("#conn")).to_have_text("live")


def group_row(page: Any, name: str) -> Any:
    return page.locator(f'#group-list li[data-name="{name}"]')


def test_counts_change_live_without_reloading(manager: ManagerHandle, page: Any) -> None:
    """Steps: open the page; add five quick jobs and one that runs a second over REST.
    Expected: the rep group appears with 6 jobs, shows one running, then 100% complete,
    and the totals say so, all without the page reloading or polling the job list."""
    from playwright.sync_api import expect

    open_page(page, manager)
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#total-count")).to_have_text("0")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    add(manager, [{"cmd": f"true # {i}"} for i in range(5)] + [{"cmd": "sleep 1.5"}],
        rep_grp="e2e-live")
    row = group_row(page, "e2e-live")
    expect(row.locator(".badge")).to_have_text("6")
    expect(row.locator(".summary")).to_contain_text("1 running")
    expect(row.locator(".summary")).to_have_text("100% complete")
    expect(page.locator("#total-count")).to_have_text("6")
    expect(page.locator("#legend")).to_contain_text("complete 6")
    assert page.evaluate("window.notReloaded") is True
    assert page.evaluate("window.wrStats.updates") > 0
    assert not [u for u in requests if "/rest/v1/jobs" in u]


def test_drill_down_shows_a_failed_jobs_output_and_retries_it(manager: ManagerHandle,
                                                             page: Any) -> None:
    """Steps: a job fails (exit 7) printing to stdout and stderr and is buried; open the
    page, open its rep group, retry the job and confirm.
    Expected: the buried class says exit code 7; the job's command, stdout and stderr are
    shown without another click; after the retry it runs again (attempt 2) and the page
    shows it buried again with 2 attempts, without a reload."""
    from playwright.sync_api import expect

    add(manager, [{"cmd": "echo visible-out; echo visible-err >&2; exit 7", "retries": 0}],
        rep_grp="e2e-fail")
    wait_for(lambda: states(manager, "e2e-fail")[0]["State"] == "buried", what="buried")
    add(manager, [{"cmd": "true"}], rep_grp="e2e-fail")
    open_page(page, manager)
    group_row(page, "e2e-fail").locator(".group-name").click()
    expect(page.locator("#drill-title")).to_have_text("e2e-fail")
    buried = page.locator("section.class.s-buried")
    expect(buried.locator("h3")).to_contain_text("exit code 7")
    expect(buried.locator("h3")).to_contain_text("command exited non-zero")
    job = buried.locator("li.job").first
    expect(job.locator(".cmd")).to_contain_text("echo visible-out")
    expect(job.locator("pre", has_text="visible-out")).to_be_visible()
    expect(job.locator("pre", has_text="visible-err")).to_be_visible()
    expect(page.locator("section.class.s-complete")).to_contain_text("true")
    job.get_by_role("button", name="Retry").click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Retry the buried job")
    dialog.get_by_role("button", name="Retry").click()
    expect(page.locator("#toast")).to_have_text("Retried 1 job.")
    wait_for(lambda: any(j["Attempts"] == 2 and j["State"] == "buried"
                         for j in states(manager, "e2e-fail")), what="a second attempt")
    attempts = page.locator("section.class.s-buried li.job dt:text-is('Attempts') + dd")
    expect(attempts).to_have_text("2")


def test_kill_a_running_job(manager: ManagerHandle, page: Any) -> None:
    """Steps: a job sleeps; open its group from the bar's 'running' segment; kill it.
    Expected: after confirming, the page shows it buried as killed by user request."""
    from playwright.sync_api import expect

    add(manager, [{"cmd": "sleep 300", "retries": 0}], rep_grp="e2e-kill")
    wait_for(lambda: states(manager, "e2e-kill")[0]["State"] == "running", what="running")
    open_page(page, manager)
    group_row(page, "e2e-kill").locator("button.seg.s-running").click()
    running = page.locator("section.class.s-running")
    expect(running.locator("li.job .cmd")).to_contain_text("sleep 300")
    expect(running.locator("dt:text-is('Host') + dd")).not_to_have_text("–")
    running.locator("li.job").get_by_role("button", name="Kill").click()
    page.locator("dialog#confirm").get_by_role("button", name="Kill").click()
    buried = page.locator("section.class.s-buried")
    expect(buried.locator("h3")).to_contain_text("killed by user request")
    expect(page.locator("section.class.s-running")).to_have_count(0)
    assert states(manager, "e2e-kill")[0]["FailReason"] == "killed by user request"


def test_keyboard_and_phone(manager: ManagerHandle, browser: Any) -> None:
    """Steps: on a phone-sized screen, press / and type a group's name, Tab to it, press
    Enter, then Escape.
    Expected: the drill-down opens and closes by keyboard; nothing is wider than the
    screen."""
    from playwright.sync_api import expect

    add(manager, [{"cmd": "exit 1", "retries": 0}, {"cmd": "true"}], rep_grp="e2e-keys")
    wait_for(lambda: {j["State"] for j in states(manager, "e2e-keys")} == {"buried", "complete"},
             what="both done")
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 390,
                                                                      "height": 844})
    context.set_default_timeout(TIMEOUT)
    try:
        page = context.new_page()
        open_page(page, manager)
        page.keyboard.press("/")
        page.keyboard.type("e2e-keys")
        expect(page.locator("#group-list li.group")).to_have_count(1)
        for _ in range(6):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.className") == "group-name":
                break
        assert page.evaluate("document.activeElement.textContent") == "e2e-keys"
        page.keyboard.press("Enter")
        expect(page.locator("#drill-view")).to_be_visible()
        expect(page.locator("section.class.s-buried")).to_be_visible()
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 390, f"the drill-down is {wide}px wide on a 390px screen"
        page.keyboard.press("Escape")
        expect(page.locator("#overview-view")).to_be_visible()
        assert page.evaluate("document.activeElement.textContent") == "e2e-keys"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_page_recovers_after_a_manager_restart(make_manager: Any, page: Any) -> None:
    """Steps: open the page of a manager on fixed ports; stop the manager; start it again
    with the same token (as after a crash: a clean stop deletes the token file, so the test
    puts it back); add jobs.
    Expected: the page says the connection is lost, reconnects by itself with back-off,
    shows the counts from before the restart again and the new jobs live."""
    from playwright.sync_api import expect

    port, web_port = _free_ports(2)
    m = make_manager(WR_MANAGERPORT=str(port), WR_MANAGERWEB=str(web_port))
    m.start()
    add(m, [{"cmd": f"true # {i}"} for i in range(3)], rep_grp="before")
    wait_for(lambda: all(j["State"] == "complete" for j in states(m, "before")),
             what="3 complete")
    open_page(page, m)
    expect(group_row(page, "before").locator(".summary")).to_have_text("100% complete")
    token = m.token
    m.stop()
    expect(page.locator("#conn")).to_have_text("disconnected")
    expect(page.locator("#banner")).to_contain_text("Connection to the manager lost")
    # A few failed attempts: the back-off grows.
    expect(page.locator("#banner")).to_contain_text("(attempt 3)", timeout=30_000)
    (m.dir / "client.token").write_text(token)
    (m.dir / "client.token").chmod(0o600)
    m.start()
    assert m.web_port == web_port
    expect(page.locator("#conn")).to_have_text("live", timeout=45_000)
    expect(page.locator("#banner")).to_be_hidden()
    expect(group_row(page, "before").locator(".badge")).to_have_text("3")
    add(m, [{"cmd": "true"}, {"cmd": "false", "retries": 0}], rep_grp="after")
    expect(group_row(page, "after").locator(".summary")).to_have_text(
        "1 buried · 50% complete")
    assert page.evaluate("window.wrStats.snapshots") >= 2


def test_without_the_token_the_page_refuses(manager: ManagerHandle, page: Any) -> None:
    """Steps: open the page with no token, then with a wrong one; try the live feed from
    the page without a token.
    Expected: 401 pages that say how to get the token; the feed never opens."""
    response = page.goto(f"{manager.url}/")
    assert response.status == 401
    assert "client.token" in page.content()
    assert "This address has no token." in page.inner_text("body")
    response = page.goto(f"{manager.url}/?token=not-the-token")
    assert response.status == 401
    assert "not this manager's" in page.inner_text("body")
    opened = page.evaluate("""() => new Promise((resolve) => {
        const ws = new WebSocket(`wss://${location.host}/web/live`);
        ws.onopen = () => resolve(true);
        ws.onclose = () => resolve(false);
    })""")
    assert opened is False


def test_a_new_token_after_a_clean_restart_is_explained(make_manager: Any,
                                                        page: Any) -> None:
    """A clean stop deletes the token, so the restarted manager has a new one: the page
    says its token was refused and where the new one is, instead of retrying forever."""
    from playwright.sync_api import expect

    port, web_port = _free_ports(2)
    m = make_manager(WR_MANAGERPORT=str(port), WR_MANAGERWEB=str(web_port))
    m.start()
    open_page(page, m)
    m.stop()
    m.start()
    expect(page.locator("#conn")).to_have_text("refused", timeout=45_000)
    expect(page.locator("#banner")).to_contain_text("client.token")
