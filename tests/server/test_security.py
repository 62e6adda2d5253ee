"""headscope/server/http/security.py: the Host check against DNS rebinding, and the headers that bound what pages may do.

The browser tests run a rebinding attack for real: Chromium resolves attacker.example to 127.0.0.1
(--host-resolver-rules), the attacker's page is served from http://attacker.example:PORT, and its
script asks our server for attention weights, as a page would after its name was rebound. Chromium's
Private Network Access checks would block that fetch on their own; they are turned off, since Firefox
and Safari have no such check.
"""

import json

import pytest
from fastapi.testclient import TestClient

from headscope.server.app import create_app
from headscope.server.settings import Settings
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, LiveServer


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:1234", "[::1]:8000", "LOCALHOST.",
                                  "testserver"])  # the last: the address TestClient's requests come to
def test_local_names_and_the_bound_address_are_served(client, host):
    assert client.get("/api/models", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example",
                                  "localhost.attacker.example:8000", "", "[::2]:8000"])
def test_other_host_names_are_refused_naming_the_host_and_the_option(client, host):
    r = client.get("/api/models", headers={"Host": host})
    assert r.status_code == 421
    body = r.json()
    assert body["error"] == "unknown_host" and body["host"] == host
    assert "--allow-host" in body["detail"] and repr(host) in body["detail"]


def test_allowed_hosts_adds_names_and_a_star_allows_any(models):
    with TestClient(create_app(Settings(allowed_hosts=("my.box",)), models=models)) as c:
        assert c.get("/api/models", headers={"Host": "my.box:8000"}).status_code == 200
        assert c.get("/api/models", headers={"Host": "other.box"}).status_code == 421
    with TestClient(create_app(Settings(allowed_hosts=("*",)), models=models)) as c:
        assert c.get("/api/models", headers={"Host": "other.box"}).status_code == 200


@pytest.mark.parametrize("path", ["/", "/api/models", "/static/js/main.js", "/api/nothing"])
def test_every_answer_forbids_sniffing_framing_and_other_origins(client, path):
    r = client.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    policy = r.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy  # scripts fall back to default-src 'self': no inline script runs


def test_docs_get_their_own_policy_for_swagger_uis_inline_script(client):
    policy = client.get("/docs").headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-inline'" in policy and "frame-ancestors 'none'" in policy


# ---- in the browser -----------------------------------------------------------------------------------

READ_ATTENTION = """async () => {
    const r = await fetch('/api/attention', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                             body: JSON.stringify({text: 'my private text'})});
    return {status: r.status, body: await r.text()};
}"""


def rebinding_attack(browser, url: str) -> dict:
    """What a page at http://attacker.example:PORT, rebound to 127.0.0.1, reads from the server at `url`."""
    port = url.rsplit(":", 1)[1]
    attacker = browser.browser_type.launch(executable_path=CHROMIUM, args=[
        *CHROMIUM_ARGS, "--host-resolver-rules=MAP attacker.example 127.0.0.1",
        # Chromium's own guard (a public page may not fetch from loopback) is off, as in browsers without it
        "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,"
        "PrivateNetworkAccessSendPreflights"])
    try:
        page = attacker.new_page()
        origin = f"http://attacker.example:{port}"
        page.route(f"{origin}/", lambda route: route.fulfill(content_type="text/html", body="<p>cats</p>"))
        page.goto(f"{origin}/")  # the attacker's page, as its own server served it before the rebinding
        return page.evaluate(READ_ATTENTION)  # same origin for the browser; our server for the network
    finally:
        attacker.close()


@pytest.mark.browser
def test_a_rebound_page_cannot_read_the_api(browser, live_server):
    result = rebinding_attack(browser, live_server.url)
    assert result["status"] == 421
    body = json.loads(result["body"])
    assert body["error"] == "unknown_host" and "attention" not in body


@pytest.mark.browser
def test_the_same_attack_reads_a_server_that_allows_any_host(browser, models):
    """The attack above is real: against a server that answers any Host, it reads the weights."""
    with LiveServer(create_app(Settings(allowed_hosts=("*",)), models=models)) as server:
        result = rebinding_attack(browser, server.url)
    assert result["status"] == 200 and "encoder" in json.loads(result["body"])["attention"]


@pytest.mark.browser
def test_the_page_works_under_its_policy(page):
    """The `page` fixture fails on any console error, which is where the browser reports a blocked load."""
    response = page.goto(f"{page.base_url}/?text=The+cat+sat.")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=60_000)
    page.click('canvas.head[data-layer="0"][data-head="0"]')  # loads Plotly, which adds its <style> elements
    page.wait_for_selector("#heatmap .main-svg", timeout=30_000)


@pytest.mark.browser
def test_swagger_ui_works_under_its_policy(page):
    page.goto(f"{page.base_url}/docs")
    page.wait_for_selector("#operations-default-attention_api_attention_post, .opblock", timeout=30_000)
    assert page.locator(".opblock").count() >= 3
