"""The web UI in a real browser: `swifti2v ui` on a loopback port, driven by headless Chromium (Selenium).

Needs the system's chromium and chromedriver (`apt-get install chromium chromium-driver`; `.ci/run` installs
them when missing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, kill_group

pytest.importorskip("gradio")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs chromium + chromedriver "
                                "(apt-get install chromium chromium-driver)")
SMALL = {"height": "64", "width": "128", "frames": "9"}  # debug-random at 8 fps: 1.125 s of video
LONG = {"height": "128", "width": "256", "frames": "65"}  # ~10 s on 2 cores, 6 Stage II segments


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`swifti2v ui` in a process group of its own; its log is checked for tracebacks by the tests. It computes on
    one core, so the browser keeps the other: on a 2-core machine a page starved of CPU answers seconds late."""
    root = tmp_path_factory.mktemp("ui")
    port, log = free_port(), root / "server.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "swifti2v", "ui", "--preset", "debug-random", "--port",
                                 str(port), "--out-dir", str(root / "out")], stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the UI did not start:\n" + log.read_text()
                time.sleep(0.5)
        yield {"url": url, "out": root / "out", "log": log}
    finally:
        kill_group(proc.pid)
        proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#generate"), 60, "the page")


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def fill(driver, image: Path, settings: dict, seed: str = "0", steps: str = "4") -> None:
    driver.find_element(By.CSS_SELECTOR, "#image-upload input[type=file]").send_keys(str(image))
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#preview img"), 30, "the crop preview")
    for name, value in {**settings, "seed": seed, "stage2-steps": steps}.items():
        box = driver.find_element(By.CSS_SELECTOR, f"#{name} input")
        box.clear()
        box.send_keys(value)


def status(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#status").text


def outputs(server) -> set[str]:
    return {p.name for p in server["out"].glob("*.mp4") if not p.name.endswith(".stage1.mp4")}


def test_generate_plays_and_its_json_downloads(server, browser, image_file, tmp_path):
    open_page(browser, server["url"])
    fill(browser, image_file, SMALL, seed="5")
    t0 = time.perf_counter()
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    wait_for(lambda: "Done" in status(browser), 120, "the run to finish")
    video = browser.find_element(By.CSS_SELECTOR, "#result-video video")
    wait_for(lambda: browser.execute_script("return arguments[0].readyState", video) >= 2, 30, "the video to load")
    seconds = time.perf_counter() - t0
    assert browser.execute_script("return arguments[0].duration", video) == pytest.approx(9 / 8, abs=0.02)
    low = browser.find_element(By.CSS_SELECTOR, "#stage1-video video")
    wait_for(lambda: browser.execute_script("return arguments[0].readyState", low) >= 2, 30, "the Stage I clip")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#crop-bicubic img, #crop-final img")) == 2
    browser.find_element(By.CSS_SELECTOR, "#download-json").click()
    saved = wait_for(lambda: [p for p in browser.downloads.glob("*.json")], 30, "the JSON download")
    info = json.loads(saved[0].read_text())
    assert info["config"]["video"]["frames"] == 9 and info["config"]["seed"] == 5
    assert (server["out"] / info["output"]).is_file(), "written under --out-dir"
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#gallery img"), 30, "the gallery")
    browser.save_screenshot(str(tmp_path / "finished.png"))
    print(f"UI generate (debug-random 128x64x9) from click to playable video: {seconds:.1f} s")


def test_a_non_image_upload_shows_an_error_in_the_page(server, browser, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    open_page(browser, server["url"])
    browser.find_element(By.CSS_SELECTOR, "#image-upload input[type=file]").send_keys(str(bad))
    toast = wait_for(lambda: "not a readable image" in browser.page_source, 30, "the error message")
    assert toast and "notes.png" in browser.page_source
    assert "Traceback" not in browser.page_source
    assert "Traceback" not in server["log"].read_text()


def test_cancel_mid_run_leaves_no_file_under_the_final_name(server, browser, image_file):
    before = outputs(server)
    open_page(browser, server["url"])
    fill(browser, image_file, LONG, steps="200")  # slow segments (~2 s each): the click lands mid-run
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    wait_for(lambda: list(server["out"].glob(".work/*/segment-0000.safetensors")), 120, "the first segment")
    wait_for(lambda: "segment " in browser.page_source, 30, "Stage II progress in the page")
    browser.find_element(By.CSS_SELECTOR, "#cancel").click()
    wait_for(lambda: "Cancelled" in status(browser), 120, "the cancel to land")
    assert outputs(server) == before, "no video under a final name"
    assert not list(server["out"].glob(".*partial*")), "no half-written file either"
    assert list(server["out"].glob(".work/*/segment-0000.safetensors")), "finished segments kept for a resume"
    assert "Traceback" not in server["log"].read_text()


def test_two_queued_jobs_both_finish(server, browser, image_file):
    before = outputs(server)
    open_page(browser, server["url"])
    first = browser.current_window_handle
    fill(browser, image_file, LONG, seed="1")
    browser.switch_to.new_window("tab")
    second = browser.current_window_handle
    open_page(browser, server["url"])
    fill(browser, image_file, SMALL, seed="2")
    browser.switch_to.window(first)
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    wait_for(lambda: "stage1 steps" in browser.page_source or "segment 1/" in browser.page_source, 120,
             "the first job")
    browser.switch_to.window(second)
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    wait_for(lambda: "queue" in browser.page_source.lower(), 60, "the second job's place in the queue")
    wait_for(lambda: "Done" in status(browser), 300, "the second job")
    browser.switch_to.window(first)
    wait_for(lambda: "Done" in status(browser), 300, "the first job")
    assert len(outputs(server) - before) == 2
    browser.switch_to.window(second)
    browser.close()
    browser.switch_to.window(first)
