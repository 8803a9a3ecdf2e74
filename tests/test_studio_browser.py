"""The studio in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium):
type a prompt, choose tiny-ltx, Generate, see a live preview, get a video that loads (duration > 0),
save a screenshot in the test's temporary folder. install.sh installs chromium on its test path; the
test is skipped only where no chromium can be found."""
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio")
webdriver = pytest.importorskip("selenium.webdriver")

CHROMIUM = next((p for p in (os.environ.get("KINETOGRAPH_CHROMIUM"), "/usr/bin/chromium",
                             shutil.which("chromium"), shutil.which("chromium-browser")) if p and Path(p).is_file()),
                None)
DRIVER = next((p for p in (os.environ.get("KINETOGRAPH_CHROMEDRIVER"), "/usr/bin/chromedriver",
                           shutil.which("chromedriver")) if p and Path(p).is_file()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="Debian's chromium and chromium-driver are not installed (install.sh installs "
                                       "them: apt-get install chromium chromium-driver)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def studio_url(tmp_path):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from studio import jobs
    from studio.app import build

    config = jobs.StudioConfig(outputs=tmp_path / "outputs", uploads=tmp_path / "uploads")
    demo = build(config)
    demo.queue()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=True,
                allowed_paths=[str(config.outputs), str(config.uploads)])
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    demo.runner.worker.shutdown(wait=False, cancel_running=True)


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager never downloads a browser or a driver
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1800", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    yield driver
    driver.quit()


def wait_for(condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_generate_in_a_real_browser(studio_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(studio_url)
    prompt = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#g-prompt textarea"), 60, "the prompt box")[0]
    prompt.send_keys("a red fox in the snow")

    model = browser.find_element(By.CSS_SELECTOR, "#g-model input")
    model.click()
    model.send_keys(Keys.CONTROL, "a")
    model.send_keys("tiny-ltx")
    try:
        option = wait_for(lambda: [o for o in browser.find_elements(By.CSS_SELECTOR, "[role=option], ul.options li")
                                   if "tiny-ltx" in o.text], 10, "the tiny-ltx option")[0]
        option.click()
    except AssertionError:
        print(browser.execute_script("return document.querySelector('#g-model').outerHTML")[:3000])
        raise
    assert "tiny-ltx" in model.get_attribute("value")

    browser.find_element(By.CSS_SELECTOR, "#generate-btn").click()
    wait_for(lambda: [i for i in browser.find_elements(By.CSS_SELECTOR, "#g-preview img")
                      if (i.get_attribute("src") or "")], 120, "a live preview image")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#g-video video"), 120, "the video element")
    duration = wait_for(lambda: browser.execute_script(
        "const v = document.querySelector('#g-video video') || document.querySelector('video');"
        "return v && v.readyState >= 1 && v.duration > 0 ? v.duration : 0;"), 60, "the video to load")
    status = browser.find_element(By.CSS_SELECTOR, "#g-status").text
    shot = tmp_path / "studio-generate.png"
    browser.save_screenshot(str(shot))
    print(f"\nscreenshot: {shot}")
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert duration > 0
    assert "Done" in status, status
