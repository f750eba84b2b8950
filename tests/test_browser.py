"""The explorer in a real browser: JupyterLab on a free local port, notebook 05 run in headless Chromium,
a slider moved, and the displayed image compared with the network's output for that vector.

Needs Debian's Chromium (``apt-get install chromium``; ``.ci/run`` installs it). Without it the test says
so and skips, unless FILMMTL_REQUIRE_BROWSER=1, where it fails.
"""
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "05_interactive_interpolation.ipynb"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium on a machine without internet: no background traffic, no sandbox as root (Debian's package).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
TOKEN = "filmmtl-browser-test"

if not CHROMIUM and os.environ.get("FILMMTL_REQUIRE_BROWSER") == "1":
    raise RuntimeError("FILMMTL_REQUIRE_BROWSER=1 but no chromium on PATH: apt-get install chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="browser test skipped: no Chromium on PATH "
                                "(apt-get install chromium; .ci/run installs it)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab serving a copy of notebook 05 from tmp_path/notebooks, with the profile left to 'auto'
    (course on a CPU: the shipped network) and live widgets (no FILMMTL_HEADLESS)."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, notebooks)
    env = {k: v for k, v in os.environ.items() if k not in ("FILMMTL_PROFILE", "FILMMTL_HEADLESS")}
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               OMP_NUM_THREADS=os.environ.get("FILMMTL_TEST_THREADS", "2"))
    port = free_port()
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={notebooks}",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def decode(png_bytes):
    return np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB")).astype(int)


def displayed(page, css):
    """The PNG bytes that the <img> matching ``css`` shows (widgets.Image serves them as a blob URL)."""
    return bytes(page.locator(css).evaluate(
        "async img => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))"))


def test_slider_in_jupyterlab_shows_the_networks_output(jupyterlab, tmp_path):
    from playwright.sync_api import sync_playwright
    from filmmtl.explorer import image_png
    from filmmtl.session import Session

    shots = Path(os.environ.get("FILMMTL_OUTPUT", tmp_path)) / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{jupyterlab}/lab/tree/{NOTEBOOK}?token={TOKEN}")
        page.locator(".jp-Notebook").wait_for(timeout=60_000)
        # Run All only once the kernel is idle: a request sent while it still starts can be dropped (seen on
        # a loaded machine), so try again until a cell shows it has run or is running.
        page.get_by_text(re.compile(r"ipykernel\) \| Idle")).wait_for(timeout=120_000)
        started = page.locator(".jp-InputPrompt", has_text=re.compile(r"\[(\*|\d+)\]"))
        for _ in range(3):
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            try:
                started.first.wait_for(timeout=60_000)
                break
            except Exception:
                continue
        try:
            page.locator("img.filmmtl-output").wait_for(timeout=300_000)
        except Exception:
            page.screenshot(path=str(shots / "explorer-timeout.png"))
            stderr = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
            errors = page.locator(stderr).all_inner_texts()
            pytest.fail(f"no explorer image after 5 min; screenshot {shots / 'explorer-timeout.png'}; cell errors "
                        f"{[e[-500:] for e in errors]}; "
                        f"server log: {(tmp_path / 'jupyterlab.log').read_text()[-1500:]}")
        # The notebook's later cells (the seventh task trains for minutes) hold the kernel: a slider's change
        # waits for them, so move it once every cell has run.
        page.get_by_text(re.compile(r"ipykernel\) \| Idle")).wait_for(timeout=600_000)
        before = displayed(page, "img.filmmtl-output")

        readout = page.locator(".filmmtl-slider-style_gogh .widget-readout")
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("1")
        page.keyboard.press("Enter")
        deadline = time.time() + 60
        while displayed(page, "img.filmmtl-output") == before and time.time() < deadline:
            time.sleep(0.2)
        after = displayed(page, "img.filmmtl-output")
        timing = page.locator(".filmmtl-timing").inner_text()
        page.locator(".filmmtl-output").scroll_into_view_if_needed()
        news = page.get_by_role("button", name="No", exact=True)
        if news.count():  # JupyterLab's "notified about news?" toast would cover the widget
            news.first.click()
            page.wait_for_timeout(500)
        page.screenshot(path=str(shots / "explorer.png"))
        # The widget alone, as notebook 05 shows it (docs/images/explorer_live.png is a copy of it).
        widget = page.locator(".jp-OutputArea-output:has(img.filmmtl-output)")
        widget.screenshot(path=str(shots / "explorer_widget.png"))
        browser.close()

    # The same network and image, computed here: the browser must show exactly this output.
    session = Session(profile="course")
    model, config, _, _ = session.network("proposed")
    image = session.test_set().batch(torch.arange(1))[0]
    c = torch.zeros(len(config["tasks"]))
    c[config["tasks"].index("style_gogh")] = 1.0
    with torch.no_grad():
        expected = decode(image_png(model(image, c)[0].clamp(0, 1), 192))
        unchanged = decode(image_png(model(image, torch.zeros_like(c))[0].clamp(0, 1), 192))
    shown, shown_before = decode(after), decode(before)
    assert np.abs(shown_before - unchanged).max() <= 2, "before the move the output is the c = 0 output"
    assert np.abs(shown - shown_before).mean() > 10, "the displayed image did not change"
    assert np.abs(shown - expected).max() <= 2, "the displayed image is not the network's output for c"
    assert timing.startswith("output in "), timing
