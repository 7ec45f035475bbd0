"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real tursid serving the
bundled MiniLM and SmolLM2.

The test logs in through the one-time link `tursi ui` prints, deploys both models from the form, watches them
become healthy, previews a plan, sees the charts receive points, streams a chat reply and compares embeddings in
the playground, lists the images, and removes a deployment. A page on another origin, in the same logged-in
browser, cannot change anything. Screenshots of each page go to build/screenshots/ (not committed).
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProc, Env, wait_for
from tests.integration.test_lifecycle import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"


def chromium_path() -> str:
    """Debian's Chromium, installed by platform/install-chromium.sh when missing (as root, as CI runs)."""
    found = shutil.which("chromium")
    if found is not None:
        return found
    script = ROOT / "platform" / "install-chromium.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"Chromium is needed ({script}):\n{done.stderr[-2000:]}"
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def ui(env: Env, seeded_minilm: None) -> Iterator[tuple[Env, str]]:
    """tursid with its dashboard; MiniLM's conversion comes from the session's (the dashboard is the point here)."""
    port = free_port()
    env.vars["TURSI_UI"] = f"127.0.0.1:{port}"
    env.vars["TURSI_SAMPLE_INTERVAL"] = "1"
    daemon = DaemonProc(env).start()
    try:
        yield env, f"http://127.0.0.1:{port}"
    finally:
        daemon.terminate()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield chrome
        finally:
            chrome.close()


@pytest.fixture
def foreign_site(tmp_path: Path) -> Iterator[str]:
    """A page on another origin (another port) that tries to stop a deployment through the dashboard."""
    (tmp_path / "index.html").write_text("<!doctype html><title>elsewhere</title><p>another site</p>")
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def deploy_from_form(page: Any, model: str, name: str) -> None:
    page.goto(page.url.split("#")[0] + "#/deployments")
    page.fill("#up-model", model)
    page.fill("#up-name", name)
    page.click("#up-submit")
    page.wait_for_selector(f"#up-progress:has-text('{name} is ready')", timeout=900_000)
    healthy = f"tr[data-name='{name}'] .status[data-status='running']:has-text('healthy')"
    page.wait_for_selector(healthy, timeout=120_000)  # the live table, polled: starting, then its health check


def test_the_dashboard_drives_real_models_in_chromium(
    ui: tuple[Env, str],
    browser: Any,
    minilm_dir: Path,
    smollm2_gguf: Path,
    tiny_classifier: Path,
    tiny_fill_mask: Path,
    foreign_site: str,
) -> None:
    env, base = ui
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.goto(base + "/ui/")
    assert page.locator("text=This page needs a session").is_visible()  # no session: the log-in page

    url = env.cli("ui", check=True).stdout.strip()
    assert url.startswith(base + "/ui/login?token=")
    page.goto(url)
    page.wait_for_selector("#deployments")
    assert page.url == base + "/ui/"  # the token left the address bar
    cookie = next(c for c in context.cookies() if c["name"] == "tursi_ui")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    again = browser.new_page()
    again.goto(url)  # one-time: a second use of the link is refused
    assert again.locator("text=This page needs a session").is_visible()
    again.close()

    deploy_from_form(page, str(smollm2_gguf), "smol")
    deploy_from_form(page, str(minilm_dir), "minilm")
    shots = [shot(page, "deployments")]

    page.goto(base + "/ui/#/plan")
    page.fill("#plan-model", str(minilm_dir))
    page.click("#plan-submit")
    page.wait_for_selector("#plan-reasons dt", timeout=120_000)
    assert page.locator("#plan-result").inner_text().count("onnx") >= 1
    shots.append(shot(page, "plan-preview"))

    page.goto(base + "/ui/#/play/smol")
    page.fill("#chat-input", "What is the capital of France?")
    with page.expect_response(lambda r: r.url.endswith("/ui/play/v1/chat/completions")) as answer:
        page.click("#chat-send")
    assert answer.value.headers["content-type"].startswith("text/event-stream")  # streamed, not one answer
    page.wait_for_selector(".msg.assistant[data-streaming='no']", timeout=300_000)
    reply = page.locator(".msg.assistant").inner_text()
    assert reply.strip()
    assert not reply.startswith("error")
    shots.append(shot(page, "playground-chat"))

    page.goto(base + "/ui/#/play/minilm")
    page.click("#embed-go")
    page.wait_for_selector("td[data-cell='0,1']", timeout=120_000)
    near = float(page.inner_text("td[data-cell='0,1']"))  # a cat on a mat ~ a kitten on a rug
    far = float(page.inner_text("td[data-cell='0,2']"))  # ... not the stock market
    assert float(page.inner_text("td[data-cell='0,0']")) == pytest.approx(1.0, abs=1e-3)
    assert near > far + 0.2, (near, far)
    shots.append(shot(page, "playground-embeddings"))

    for task, model, text, what in (  # random-weight task models (no real one is on the package index)
        ("classify", tiny_classifier, "a fine day", "label"),
        ("fill", tiny_fill_mask, "Paris is the [MASK] of France.", "token"),
    ):
        deploy_from_form(page, str(model), task)
        page.goto(base + f"/ui/#/play/{task}")
        page.fill("#task-input", text)
        page.click("#task-go")
        page.wait_for_selector("#task-out tr", timeout=60_000)
        scores = [float(s) for s in page.locator("#task-out tr td:nth-child(2)").all_inner_texts()]
        assert scores, what
        assert all(0.0 <= s <= 1.0 for s in scores), scores  # each answer with its score
        if task == "classify":
            shots.append(shot(page, "playground-classifier"))

    page.goto(base + "/ui/#/d/smol")
    for _ in range(3):  # traffic for the charts: chat requests through the playground's route
        page.evaluate(
            """async () => { const s = await (await fetch('/ui/session')).json();
               await fetch('/ui/play/v1/chat/completions', {method: 'POST', headers: {'Content-Type':
               'application/json', 'X-CSRF-Token': s.csrf}, body: JSON.stringify({model: 'smol', max_tokens: 4,
               messages: [{role: 'user', content: 'hi'}]})}); }"""
        )
    page.wait_for_function(
        "() => Number(document.querySelector(\"[data-chart='cpu']\").dataset.points || 0) >= 3", timeout=60_000
    )
    page.wait_for_function(
        "() => Number(document.querySelector(\"[data-chart='mem']\").dataset.points || 0) >= 3", timeout=60_000
    )
    page.wait_for_selector("#log:has-text('ready')", timeout=30_000)  # the worker's log, followed live
    page.wait_for_selector("#inspect dt:has-text('Quality vs fp32')")
    shots.append(shot(page, "deployment"))

    page.goto(base + "/ui/#/images")
    page.wait_for_selector("#images tr[data-key]")
    assert page.locator("#images tr[data-key]").count() >= 2
    shots.append(shot(page, "images"))

    elsewhere = context.new_page()  # the same browser, logged in, on a page of another site
    elsewhere.goto(foreign_site)
    outcome = elsewhere.evaluate(
        """async (base) => { const tries = [];
           for (const mode of ['cors', 'no-cors']) {
             try { const r = await fetch(base + '/v1/deployments/smol/stop', {method: 'POST', mode,
                   credentials: 'include', headers: {'Content-Type': 'text/plain'}, body: '{}'});
                   tries.push(mode + ':' + r.status); }
             catch (e) { tries.push(mode + ':blocked'); } }
           return tries; }""",
        base,
    )
    elsewhere.close()
    smol = next(d for d in env.ps() if d["name"] == "smol")
    assert smol["status"] == "running", outcome  # nothing was stopped by the other site

    page.goto(base + "/ui/#/deployments")
    key = next(d for d in env.ps() if d["name"] == "minilm")["artifact_key"]
    page.wait_for_selector("tr[data-name='minilm'] button[data-action='remove']")
    page.click("tr[data-name='minilm'] button[data-action='remove']")
    page.wait_for_selector("tr[data-name='minilm']", state="detached", timeout=60_000)
    wait_for(lambda: "minilm" not in [d["name"] for d in env.ps("-a")], timeout=30)

    page.goto(base + "/ui/#/images")  # minilm's artifact is unused now: remove it from the images page
    page.locator(f"#images tr[data-key='{key}'] button").click()
    page.wait_for_selector(f"#images tr[data-key='{key}']", state="detached", timeout=30_000)
    assert not (env.home / "artifacts" / str(key)).exists()
    print("\nscreenshots:\n  " + "\n  ".join(str(p.relative_to(ROOT)) for p in shots) + f"\nforeign site: {outcome}")
