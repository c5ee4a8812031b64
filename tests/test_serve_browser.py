"""The editor page in a real browser: Debian's chromium driven headless through Selenium.

The page is loaded from a live `jaxedit serve` (the small pSp fixture's generator and encoder,
random official editors); the test moves two sliders (mouse drag, arrow keys), sees the image
change, downloads the PNG and the latents and checks that `jaxedit generate --ws` renders those
latents to the image the page shows, resets, and uploads a photo.

Runs wherever chromium and chromedriver are installed (`.ci/run` installs them); skipped without
them, except under CI (the CI environment variable), where their absence fails the test.

`test_screenshot_of_a_run` serves a `python -m train` run directory (the schematic face) named by
JAXEDIT_SCREENSHOT_RUN and saves the README's screenshot; it writes `docs/editor.png` only with
JAXEDIT_UPDATE_SCREENSHOT=1 (otherwise under pytest's tmp directory):

    python -m train --quick --out runs/demo
    JAXEDIT_SCREENSHOT_RUN=runs/demo JAXEDIT_UPDATE_SCREENSHOT=1 pytest tests/test_serve_browser.py -k screenshot
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxedit.serve.server import make_server, serve_in_thread
from tests.helpers.serve import PHOTO_FIXTURE, make_renderer, shared_editor_dirs

REPO = Path(__file__).resolve().parents[1]
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
)
TIMEOUT = 60.0


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install '.[test]')")
    if missing:
        message = f"the browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return chromium, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless chromium with a fresh profile whose downloads land in a tmp directory."""
    chromium, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}")
    downloads = tmp_path_factory.mktemp("downloads")
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    gen_dir, editors_dir, encoder_dir = shared_editor_dirs(tmp_path_factory)
    renderer = make_renderer(gen_dir, editors_dir, encoder_dir, preview="on", preview_resolution=32)
    renderer.warm_up(repeats=1)
    server = make_server(renderer, "127.0.0.1", 0, log=lambda message: None)
    serve_in_thread(server)
    yield server, gen_dir
    server.shutdown()
    server.server_close()


def wait_for(condition, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def settled(driver, image_id: str, after_seq: int = 0) -> int:
    """Wait until `image_id` shows a full image newer than `after_seq` and nothing is in flight; its seq."""

    def ready():
        state = driver.execute_script(
            "const img = document.getElementById(arguments[0]);"
            "return [img.dataset.state, Number(img.dataset.seq || 0), img.complete, "
            "document.getElementById('error').textContent];",
            image_id,
        )
        assert not state[3], f"the page shows an error: {state[3]}"
        return state[1] if state[0] == "full" and state[1] > after_seq and state[2] else 0

    return wait_for(ready, f"a full image in #{image_id}")


def pixels(driver, image_id: str) -> np.ndarray:
    """The pixels an <img> shows, drawn onto a canvas in the page and read back as PNG: uint8 [H, W, 3]."""
    encoded = driver.execute_script(
        "const img = document.getElementById(arguments[0]);"
        "const canvas = document.createElement('canvas');"
        "canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;"
        "canvas.getContext('2d').drawImage(img, 0, 0);"
        "return canvas.toDataURL('image/png').split(',')[1];",
        image_id,
    )
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB"))


def downloaded(driver, name: str) -> Path:
    path = driver.downloads / name
    wait_for(lambda: path.is_file() and not list(driver.downloads.glob("*.crdownload")), f"download {name}")
    return path


def slider(driver, name: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, f"alpha-{name}")


def assert_renders_like_generate(gen_dir: Path, latents_path: Path, shown: np.ndarray, tmp_path: Path) -> None:
    """`jaxedit generate --ws` on the downloaded latents gives the image the page shows: the float
    image lies within 1e-4 (on [-1, 1]) of one whose 8-bit rounding is exactly the page's PNG."""
    from jaxedit.cli.main import main as cli_main

    out = tmp_path / "generated.npy"
    assert cli_main(["generate", str(gen_dir), "--ws", str(latents_path), "--out", str(out)]) == 0
    generated = np.load(out)[0]  # float32 [H, W, 3], about [-1, 1]
    assert generated.shape == shown.shape
    scaled = (np.clip(generated, -1.0, 1.0) + 1.0) * 127.5  # the page's 0..255 scale
    gap = np.abs(scaled - shown.astype(np.float64)) - 0.5  # <= 0 where rounding gives the page's value
    assert gap.max() <= 1e-4 * 127.5, f"largest gap {gap.max() / 127.5:.2e} on [-1, 1]"


def test_sliders_downloads_and_reset(browser, served, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server, gen_dir = served
    driver = browser
    driver.get(server.url)
    wait_for(lambda: driver.execute_script("return document.body.dataset.ready === '1'"), "the page")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#sliders input[type=range]")) == 40
    seq = settled(driver, "after-img")
    settled(driver, "before-img")
    before = pixels(driver, "before-img")
    np.testing.assert_array_equal(pixels(driver, "after-img"), before)  # nothing edited yet

    # Slider 1: drag Smiling to the right with the mouse (input events while dragging, change on release).
    smiling = slider(driver, "Smiling")
    ActionChains(driver).click_and_hold(smiling).move_by_offset(25, 0).move_by_offset(20, 0).release().perform()
    seq = settled(driver, "after-img", seq)
    smiled = pixels(driver, "after-img")
    assert float(smiling.get_attribute("value")) > 0.3
    assert np.abs(smiled.astype(int) - before).mean() > 3, "moving Smiling did not change the image"

    # Slider 2: filter the list, then move Eyeglasses with the keyboard.
    driver.find_element(By.ID, "filter").send_keys("eyegl")
    visible = [e for e in driver.find_elements(By.CSS_SELECTOR, "#sliders .slider") if e.is_displayed()]
    assert [e.get_attribute("data-name") for e in visible] == ["Eyeglasses"]
    glasses = slider(driver, "Eyeglasses")
    glasses.send_keys(Keys.ARROW_LEFT * 12)
    wait_for(lambda: abs(float(glasses.get_attribute("value")) + 0.6) < 1e-6, "Eyeglasses at -0.6")
    seq = settled(driver, "after-img", seq)
    edited = pixels(driver, "after-img")
    assert np.abs(edited.astype(int) - smiled).mean() > 3, "moving Eyeglasses did not change the image"
    order = driver.find_element(By.ID, "order").text
    assert order.index("Smiling") < order.index("Eyeglasses")  # touch order = edit order

    driver.save_screenshot(str(tmp_path / "editor.png"))

    # Downloads: the PNG is the image shown; the latents render to it through `jaxedit generate --ws`.
    driver.find_element(By.ID, "download-png").click()
    np.testing.assert_array_equal(np.asarray(Image.open(downloaded(driver, "edited.png")).convert("RGB")), edited)
    driver.find_element(By.ID, "download-latents").click()
    latents_path = downloaded(driver, "latents.npy")
    assert np.load(latents_path).shape == (1, 10, 32)
    assert_renders_like_generate(gen_dir, latents_path, edited, tmp_path)
    driver.find_element(By.ID, "download-video").click()
    sweep = Image.open(downloaded(driver, "sweep_Eyeglasses.gif"))
    assert sweep.n_frames > 1 and sweep.size == (64, 64)

    # Reset one slider, then everything: back to the unedited face.
    driver.find_element(By.CSS_SELECTOR, ".slider[data-name=Eyeglasses] button.reset").click()
    seq = settled(driver, "after-img", seq)
    np.testing.assert_array_equal(pixels(driver, "after-img"), smiled)
    driver.find_element(By.ID, "reset-all").click()
    settled(driver, "after-img", seq)
    np.testing.assert_array_equal(pixels(driver, "after-img"), before)
    assert driver.find_element(By.ID, "order").text == "no edits"


def test_photo_upload_shows_the_crop_and_the_paste_back(browser, served, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server, gen_dir = served
    driver = browser
    driver.get(server.url)
    wait_for(lambda: driver.execute_script("return document.body.dataset.ready === '1'"), "the page")
    seq = settled(driver, "after-img")
    driver.find_element(By.ID, "photo-file").send_keys(str(PHOTO_FIXTURE))
    wait_for(lambda: driver.find_element(By.ID, "aligned-figure").is_displayed(), "the photo crop")
    seq = settled(driver, "after-img", seq)
    paste_seq = settled(driver, "paste-img")
    assert "astronaut_face.jpg" in driver.find_element(By.ID, "source-note").text
    photo = np.asarray(Image.open(PHOTO_FIXTURE).convert("RGB"))
    pasted = pixels(driver, "paste-img")
    assert pasted.shape == photo.shape
    reconstruction = pixels(driver, "after-img")
    slider(driver, "Young").send_keys(Keys.ARROW_RIGHT * 20)
    seq = settled(driver, "after-img", seq)
    settled(driver, "paste-img", paste_seq)
    assert np.abs(pixels(driver, "after-img").astype(int) - reconstruction).mean() > 3
    assert np.abs(pixels(driver, "paste-img").astype(int) - pasted).mean() > 0.5
    driver.find_element(By.ID, "download-latents").click()
    assert_renders_like_generate(gen_dir, downloaded(driver, "latents.npy"), pixels(driver, "after-img"), tmp_path)


def test_screenshot_of_a_run(browser, tmp_path):
    """The README's screenshot: a run directory's schematic face, smile removed, then hair lightened."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    run_dir = os.environ.get("JAXEDIT_SCREENSHOT_RUN")
    if not run_dir:
        pytest.skip("set JAXEDIT_SCREENSHOT_RUN to a `python -m train` run directory")
    from jaxedit.serve.models import load_models
    from jaxedit.serve.render import Renderer

    face, editors, _ = load_models([run_dir])
    renderer = Renderer(face, editors)
    renderer.warm_up(repeats=1)
    server = make_server(renderer, "127.0.0.1", 0, log=lambda message: None)
    serve_in_thread(server)
    driver = browser
    try:
        driver.get(server.url)
        wait_for(lambda: driver.execute_script("return document.body.dataset.ready === '1'"), "the page")
        assert driver.find_element(By.ID, "schematic-badge").is_displayed()
        seq = settled(driver, "after-img")
        for name in ("Smiling", "Black_Hair"):  # two edits the quick run's editors make clearly visible
            slider(driver, name).send_keys(Keys.ARROW_LEFT * 30)
            seq = settled(driver, "after-img", seq)
        assert "Smiling -1.50" in driver.find_element(By.ID, "order").text
        driver.execute_script("window.scrollTo(0, 0)")
        target = (
            REPO / "docs" / "editor.png"
            if os.environ.get("JAXEDIT_UPDATE_SCREENSHOT") == "1"
            else tmp_path / "editor.png"
        )
        driver.save_screenshot(str(target))
        assert Image.open(target).size[0] > 800
    finally:
        server.shutdown()
        server.server_close()
