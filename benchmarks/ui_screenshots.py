"""The screenshots of docs/ui.md: starts `mlflow ui` on a main job's store, drives headless Chromium through the
walk-through's steps, and writes docs/ui-*.png.

    python benchmarks/ui_screenshots.py STORE OUT [--port 5055]

STORE is the folder the main job (`kdtrack study`) ran in, after
`kdtrack register --best --method kd-mixture --name md-kd-mixture` there; OUT receives the PNGs. Needs
Chromium and chromedriver on PATH and the `screenshots` extra (Selenium). Each URL below is the one docs/ui.md
names for its picture; the clicks after it are the ones the text describes.
"""
import argparse
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import mlflow
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

SEEDS_ON_SEP025 = "params.dataset = 'sep0.25' and params.seed != '' and tags.`kdtrack.task` != 'teacher'"
COMPARED = ("baseline", "kd", "kd-es")
WIDTH, HEIGHT = 1600, 1000


def start_ui(store: Path, port: int) -> subprocess.Popen:
    """`mlflow ui` on STORE, once it answers."""
    server = subprocess.Popen(
        [shutil.which("mlflow") or "mlflow", "ui", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=store, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
            return server
        except OSError:
            time.sleep(1)
    server.kill()
    raise SystemExit("mlflow ui did not start within 5 minutes")


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
    return driver


def visible(driver, xpath: str):
    """The first displayed element at `xpath`, waiting up to a minute for it."""
    return WebDriverWait(driver, 60).until(
        lambda d: next((e for e in d.find_elements(By.XPATH, xpath) if e.is_displayed()), None))


def click_text(driver, text: str, role: str = "*") -> None:
    visible(driver, f"//{role}[normalize-space(.)='{text}']").click()
    time.sleep(1)


def open_page(driver, url: str, ready_text: str) -> None:
    driver.get(url)
    visible(driver, f"//*[contains(normalize-space(text()), '{ready_text}')]")
    time.sleep(3)  # charts and tables finish drawing after their first text appears


def close_assistant(driver) -> None:
    """The MLflow Assistant panel opens by itself on a first visit and covers a third of the page."""
    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()


def seed_runs(store: Path) -> dict[str, list[str]]:
    """The run ids of sep0.25's seed runs of each compared method, from the store."""
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_ids=["0"], filter_string=SEEDS_ON_SEP025)
    return {method: runs.run_id[runs["params.method"] == method].tolist() for method in COMPARED}


def study_run(store: Path) -> str:
    runs = mlflow.search_runs(experiment_ids=["0"], filter_string="tags.`kdtrack.task` = 'study'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs.run_id[0]


def shoot(store: Path, out: Path, base: str) -> None:
    runs, study = seed_runs(store), study_run(store)
    driver = browser()
    try:
        # 1. The run list, in the "Model training" workflow, sep0.25's seed runs grouped by method.
        runs_url = f"{base}/#/experiments/0/runs?workflowType=machine_learning&searchFilter={quote(SEEDS_ON_SEP025)}"
        open_page(driver, runs_url, "matching runs")
        close_assistant(driver)
        click_text(driver, "Group by", "button")
        click_text(driver, "method", "*[@role='menuitem' or @role='menuitemcheckbox' or @role='option']")
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        time.sleep(3)
        driver.save_screenshot(out / "ui-runs.png")

        # 2. The same groups in the Chart view: val_acc per epoch (each group's mean, its min-max band), enlarged.
        driver.find_element(By.XPATH, "//label[.//input[@value='CHART']]").click()  # the view switch's second button
        visible(driver, "//input[@placeholder='Search metric charts']").send_keys("val_acc")
        time.sleep(3)
        visible(driver, "//*[normalize-space(text())='val_acc']/ancestor::div[.//button][1]//button").click()
        time.sleep(5)
        driver.save_screenshot(out / "ui-charts.png")

        # 3. The compare view of the seed runs of baseline, kd and kd-es: a box plot of model_val_acc by method.
        ids = [run for method in COMPARED for run in runs[method]]
        compare_url = f"{base}/#/compare-runs?runs={quote(json.dumps(ids))}&experiments={quote(json.dumps(['0']))}"
        open_page(driver, compare_url, "Comparing")
        click_text(driver, "Box Plot")
        for axis, choice in (("x-axis-selector", "method"), ("y-axis-selector", "model_val_acc")):
            driver.find_element(By.ID, axis).click()
            click_text(driver, choice, "*[@role='option']")
        time.sleep(3)
        driver.save_screenshot(out / "ui-compare.png")

        # 4. The study run's artifacts: summary/ with its results table open.
        open_page(driver, f"{base}/#/experiments/0/runs/{study}/artifacts/summary/table.md", "table.md")
        driver.save_screenshot(out / "ui-summary.png")

        # 5. The registered model and its version, alias and tags.
        open_page(driver, f"{base}/#/models/md-kd-mixture", "Version 1")
        driver.save_screenshot(out / "ui-registry.png")
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="the folder holding the main job's mlflow.db and mlruns/")
    parser.add_argument("out", type=Path, help="where the PNGs go")
    parser.add_argument("--port", type=int, default=5055)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    server = start_ui(args.store.resolve(), args.port)
    try:
        shoot(args.store.resolve(), args.out, f"http://127.0.0.1:{args.port}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
