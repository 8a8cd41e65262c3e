"""Screenshot of the web UI after a finished run, and the wall time from the Generate click to a playable
video, in headless Chromium:

    python recipes/ui/screenshot.py --preset tiny --image examples/input.jpg --out docs/figures/ui.png

Starts `swifti2v ui` on a free loopback port (its --out-dir in a temporary folder) and stops it after."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.25)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--image", default="examples/input.jpg")
    p.add_argument("--prompt", default="the camera pans left over the hills")
    p.add_argument("--out", default="docs/figures/ui.png")
    a = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([sys.executable, "-m", "swifti2v", "ui", "--preset", a.preset, "--port", str(port),
                                   "--out-dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        options = webdriver.ChromeOptions()
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1500"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_for(lambda: _up(url), 120, "the UI")
            driver.get(url)
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#generate"), 60, "the page")
            driver.find_element(By.CSS_SELECTOR, "#image-upload input[type=file]").send_keys(
                str(__import__("pathlib").Path(a.image).resolve()))
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#preview img"), 60, "the preview")
            box = driver.find_element(By.CSS_SELECTOR, "#prompt textarea")
            box.clear()
            box.send_keys(a.prompt)
            t0 = time.perf_counter()
            driver.find_element(By.CSS_SELECTOR, "#generate").click()
            wait_for(lambda: "Done" in driver.find_element(By.CSS_SELECTOR, "#status").text, 900, "the run")
            video = driver.find_element(By.CSS_SELECTOR, "#result-video video")
            wait_for(lambda: driver.execute_script("return arguments[0].readyState", video) >= 2, 60, "the video")
            print(f"{a.preset}: Generate click -> playable video {time.perf_counter() - t0:.1f} s "
                  "(first run: includes loading the models)")
            time.sleep(2)
            driver.save_screenshot(a.out)
            print(driver.find_element(By.CSS_SELECTOR, "#status").text)
        finally:
            driver.quit()
            server.terminate()
            server.wait()


def _up(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
