"""The console walked in headless Debian chromium by Playwright (run by tests/it/console/mod.rs).

Environment: CONSOLE_URL, CHROMIUM, SHOTS (screenshot directory), RESPONDER_TOKEN, APPROVER_TOKEN,
VIEWER_TOKEN, ADMIN_TOKEN, HOSTILE_SUBJECT. Prints one JSON line per measured screen
({"screen", "html_bytes", "total_bytes", "fcp_ms", "shot"}) and writes them to SHOTS/metrics.json.
Any failed expectation raises, which fails the Rust test with this script's output.
"""

import http.server
import json
import os
import re
import sys
import threading
from urllib.parse import quote

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["CONSOLE_URL"]
SHOTS = os.environ["SHOTS"]
TIMEOUT_MS = 20_000
metrics = []


def measure(page, screen):
    """Screenshot the page and record its weight and first contentful paint."""
    page.wait_for_load_state("load")
    shot = os.path.join(SHOTS, f"{screen}.png")
    page.screenshot(path=shot, full_page=True)
    m = page.evaluate(
        """() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const res = performance.getEntriesByType('resource');
        const fcp = performance.getEntriesByType('paint').find(p => p.name === 'first-contentful-paint');
        const html = nav ? nav.encodedBodySize : 0;
        return {
            html_bytes: html,
            total_bytes: html + res.reduce((n, r) => n + (r.encodedBodySize || 0), 0),
            fcp_ms: fcp ? Math.round(fcp.startTime) : null,
        };
    }"""
    )
    m.update(screen=screen, shot=os.path.basename(shot))
    metrics.append(m)
    print(json.dumps(m), flush=True)


def no_dialogs(page):
    def fail(dialog):
        raise AssertionError(f"a script ran: dialog {dialog.message!r}")

    page.on("dialog", fail)


def sign_in(browser, token, screen=None):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    no_dialogs(page)
    page.goto(BASE + "/")
    expect(page).to_have_url(re.compile(r"/console/signin$"))
    if screen:
        measure(page, screen)
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console$"))
    # The token is nowhere in the browser but the cookie jar's HttpOnly session id.
    assert token not in page.url
    assert page.evaluate("() => document.cookie") == "", "session cookie readable by script"
    stored = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert token not in stored and "deprovd_console" not in stored, stored
    assert "<main" not in stored, f"a page was cached in browser storage: {stored[:200]}"
    cookie = [c for c in ctx.cookies() if c["name"] == "deprovd_console"][0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert len(cookie["value"]) == 64 and token not in cookie["value"]
    return ctx, page


def lock_out(page, subject, reason, approval=False, shot=None):
    page.goto(BASE + "/console/lockout")
    page.get_by_label("Subject").fill(subject)
    page.get_by_label("Reason").fill(reason)
    page.get_by_label("Ticket").fill("INC-4242")
    if approval:
        page.get_by_label("Hold for a second person's approval").check()
    page.get_by_role("button", name="Review lockout").click()
    expect(page.get_by_role("heading", name="Confirm lockout")).to_be_visible()
    expect(page.locator("table")).to_contain_text("disable_account")
    expect(page.locator("table")).to_contain_text(subject)
    expect(page.locator("table")).to_contain_text("cannot be undone")  # revoke_sessions
    if shot:
        measure(page, shot)
    page.get_by_role("button", name="Lock out now").click()
    expect(page).to_have_url(re.compile(r"/console/lockouts/[0-9a-f-]+$"))
    return page.url


def wait_rows(page, state, n):
    """Wait until `n` action rows are in `state`: the live table updates itself (htmx polling)."""
    expect(page.locator(f'#live tr[data-state="{state}"]')).to_have_count(n, timeout=TIMEOUT_MS)


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ["CHROMIUM"], args=["--no-sandbox"], headless=True
        )

        # Responder: sign in, overview, lock bob out, watch it succeed without reloading.
        rctx, r = sign_in(browser, os.environ["RESPONDER_TOKEN"], screen="signin")
        measure(r, "overview")
        bob = lock_out(r, "bob@example.com", "phished (console e2e)", shot="lockout-confirm")
        r.goto(bob)
        wait_rows(r, "succeeded", 2)
        expect(r.locator("#live")).to_contain_text("settled")
        measure(r, "lockout-status")

        # Four eyes: alice's lockout is held; the requester cannot approve it.
        alice = lock_out(r, "alice.smith@example.com", "token theft (console e2e)", approval=True)
        wait_rows(r, "awaiting_approval", 2)
        r.goto(BASE + "/console/approvals")
        expect(r.get_by_text("You requested this").first).to_be_visible()
        expect(r.get_by_role("button", name="Approve")).to_have_count(0)

        # Approver, in a second browser context: approve both held actions.
        actx, a = sign_in(browser, os.environ["APPROVER_TOKEN"])
        a.goto(BASE + "/console/approvals")
        expect(a.get_by_text("the responder asked for a second person").first).to_be_visible()
        expect(a.get_by_text("rita").first).to_be_visible()
        measure(a, "approvals")
        for _ in range(2):
            a.get_by_label("Comment").first.fill("confirmed with the SOC")
            a.get_by_role("button", name="Approve").first.click()
            expect(a.get_by_text("Approved: the action runs now.")).to_be_visible()
        expect(a.get_by_text("Nothing is waiting for approval.")).to_be_visible()

        # Responder: alice's actions succeed, then restore; disable_account is reversed.
        r.goto(alice)
        wait_rows(r, "succeeded", 2)
        r.get_by_role("link", name="Restore…").click()
        expect(r.get_by_text("Recorded pre-state")).to_be_visible()
        expect(r.locator("table")).to_contain_text("enable_account")
        expect(r.locator("table")).to_contain_text("cannot be undone")
        measure(r, "restore")
        r.get_by_role("button", name="Restore now").click()
        expect(r).to_have_url(alice)
        wait_rows(r, "restored", 1)

        # Timeline, action page, audit with verification, breaker (admin sees reset).
        r.goto(BASE + "/console/subject?q=" + quote("alice.smith@example.com"))
        expect(r.get_by_role("heading", name="Timeline")).to_be_visible()
        expect(r.locator("main")).to_contain_text("enable_account")
        measure(r, "subject")
        r.locator("a.mono").first.click()
        expect(r.get_by_text("Requested by")).to_be_visible()
        measure(r, "action")
        r.goto(BASE + "/console/audit")
        r.get_by_role("button", name="Verify chain").click()
        expect(r.get_by_text("Chain intact")).to_be_visible()
        measure(r, "audit")
        dctx, d = sign_in(browser, os.environ["ADMIN_TOKEN"])
        d.goto(BASE + "/console/breaker")
        expect(d.get_by_role("button", name="Reset global")).to_be_visible()
        measure(d, "breaker")

        # XSS probe: the hostile alert's title and subject render as text, nothing runs.
        hostile = os.environ["HOSTILE_SUBJECT"]
        r.goto(BASE + "/console/subject?q=" + quote(hostile))
        expect(r.locator("main")).to_contain_text("<script>alert('title')</script>")
        expect(r.locator("main")).to_contain_text(hostile)
        assert r.locator("main img").count() == 0, "markup from an alert became an element"
        assert r.locator("main script").count() == 0
        measure(r, "xss-probe")
        r.goto(BASE + "/console/audit?alert_id=xss-probe-1")
        expect(r.locator("main")).to_contain_text("<img src=x onerror=alert(8)>")
        assert r.locator("main img").count() == 0

        # Phone width: the overview still fits (no horizontal page scroll).
        phone = browser.new_context(viewport={"width": 390, "height": 844}, storage_state=rctx.storage_state())
        m = phone.new_page()
        m.goto(BASE + "/console")
        assert m.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
        measure(m, "overview-phone")

        # Viewer: no lockout form or button; a forged POST (valid session and CSRF token) is refused.
        vctx, v = sign_in(browser, os.environ["VIEWER_TOKEN"])
        v.goto(BASE + "/console/lockout")
        expect(v.get_by_role("button", name="Review lockout")).to_have_count(0)
        expect(v.locator("main")).to_contain_text("cannot lock accounts out")
        v.goto(BASE + "/console/subject?q=bob%40example.com")
        expect(v.get_by_role("link", name=re.compile("^Lock out"))).to_have_count(0)
        csrf = v.locator('input[name="csrf"]').first.get_attribute("value")
        form = {"csrf": csrf, "subject": "bob@example.com", "reason": "forged", "operation": "disable_account"}
        same_origin = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
        forged = v.request.post(BASE + "/console/lockouts", form=form, headers=same_origin, max_redirects=0)
        assert forged.status == 403, f"viewer lockout: {forged.status}"
        forged = v.request.post(BASE + "/console/lockout/confirm", form=form, headers=same_origin, max_redirects=0)
        assert forged.status == 403, f"viewer confirm: {forged.status}"

        # CSRF: a page on another origin posting a lockout form gets nowhere.
        rcsrf = r.locator('input[name="csrf"]').first.get_attribute("value")
        evil_form = (
            '<form id="f" method="post" action="' + BASE + '/console/lockouts">'
            '<input name="subject" value="bob@example.com"><input name="reason" value="csrf">'
            '<input name="csrf" value="' + rcsrf + '"></form>'
            '<script>document.getElementById("f").submit()</script>'
        )

        class Evil(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = evil_form.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        evil = http.server.HTTPServer(("127.0.0.1", 0), Evil)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        # "localhost" is another site than "127.0.0.1" to the browser.
        r.goto(f"http://localhost:{evil.server_address[1]}/")
        expect(r).to_have_url(BASE + "/console/lockouts")
        expect(r.locator("main")).to_contain_text("another site")
        # Even with the cookie and the right token, another Origin is refused.
        cross = r.context.request.post(
            BASE + "/console/lockouts",
            form={"csrf": rcsrf, "subject": "bob@example.com", "reason": "csrf"},
            headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
            max_redirects=0,
        )
        assert cross.status == 403, f"cross-origin post: {cross.status}"
        # And a same-origin post without the session's token is refused too.
        no_token = r.context.request.post(
            BASE + "/console/lockouts",
            form={"subject": "bob@example.com", "reason": "csrf"},
            headers=same_origin,
            max_redirects=0,
        )
        assert no_token.status == 403, f"post without CSRF token: {no_token.status}"
        evil.shutdown()

        # Sign-out ends the session on the server: the old cookie no longer works.
        cookie = [c for c in rctx.cookies() if c["name"] == "deprovd_console"][0]["value"]
        r.goto(BASE + "/console")
        r.get_by_role("button", name="Sign out").click()
        expect(r).to_have_url(re.compile(r"/console/signin$"))
        stale = browser.new_context()
        stale.add_cookies([{"name": "deprovd_console", "value": cookie, "url": BASE + "/console"}])
        sp = stale.new_page()
        sp.goto(BASE + "/console")
        expect(sp).to_have_url(re.compile(r"/console/signin$"))

        browser.close()
    with open(os.path.join(SHOTS, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust side prints stdout and stderr
        print(f"FAILED: {e!r}", file=sys.stderr)
        raise
