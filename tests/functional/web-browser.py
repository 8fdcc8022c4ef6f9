#!/usr/bin/python3
"""web-browser.py URL TOKEN TMPDIR ARTIFACTS DISK — drive vma-web's page in headless Debian
chromium through chromedriver (python3-selenium): log in with the token, "Backup now"
(throttled), watch the progress bar move, see the archive appear, verify it, restore it,
preview retention. A screenshot of each step goes to ARTIFACTS. Any browser console
message of level SEVERE fails the test."""
import filecmp
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

URL, TOKEN, T, ART, DISK = sys.argv[1:6]
os.makedirs(ART, exist_ok=True)

opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--no-first-run", "--disable-background-networking", "--disable-component-update",
          "--disable-sync", "--user-data-dir=" + T + "/chromium-profile",
          "--window-size=1280,1000"]:
    opts.add_argument(a)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
service = Service(executable_path="/usr/bin/chromedriver", log_output=T + "/chromedriver.log") \
    if "log_output" in Service.__init__.__code__.co_varnames \
    else Service(executable_path="/usr/bin/chromedriver", log_path=T + "/chromedriver.log")
d = webdriver.Chrome(service=service, options=opts)
console = []


def logs():
    for e in d.get_log("browser"):
        console.append(e)


def shot(name):
    d.save_screenshot(os.path.join(ART, name + ".png"))


def wait(cond, what, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = cond()
        except Exception:   # element not there yet, stale
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            shot("timeout")
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def q(sel):
    return d.find_element(By.CSS_SELECTOR, sel)


def qa(sel):
    return d.find_elements(By.CSS_SELECTOR, sel)


try:
    d.get(URL)
    wait(lambda: q("#login-panel").is_displayed(), "the login form")
    shot("1-login")
    q("#token").send_keys(TOKEN)
    q("#login").click()
    vm = wait(lambda: qa("#vm-list li[data-vm='100']"), "VM 100 in the list")[0]
    assert "2 disk" in vm.text, vm.text
    wait(lambda: len(qa("#disks tbody tr")) == 2, "the disks of VM 100")
    wait(lambda: q("#no-archives").is_displayed(), "the empty archive list")
    shot("2-vm")

    # Backup now, throttled to 8 MiB/s: a few seconds for 40 MiB
    q("#backup-speed").send_keys("8")
    q("#backup-notes").send_keys("from the browser")
    q("#backup-now").click()
    wait(lambda: q("#backup-run").is_displayed(), "the progress bar")
    values = []
    deadline = time.monotonic() + 120
    mid_shot = False
    while time.monotonic() < deadline:
        v = float(q("#backup-bar").get_attribute("value"))
        status = q("#backup-status").text
        if not values or values[-1] != v:
            values.append(v)
        if 0.3 < v < 0.9 and not mid_shot:
            shot("3-backup-running")
            mid_shot = True
        if status.startswith("done") or status.startswith("failed"):
            break
        time.sleep(0.1)
    assert q("#backup-status").text.startswith("done"), q("#backup-status").text
    moving = [v for v in values if 0 < v < 1]
    assert len(set(moving)) >= 2, "the progress bar did not move: %r" % values
    assert moving == sorted(moving), values
    assert mid_shot, "no screenshot mid-backup: %r" % values
    row = wait(lambda: qa("#archives tbody tr"), "the new archive")[0]
    name = row.get_attribute("data-name")
    assert name.startswith("vzdump-qemu-100-") and name.endswith(".vma.zst"), name
    assert "full" in row.find_element(By.CSS_SELECTOR, ".kind").text
    assert "from the browser" in row.text, row.text
    assert "not yet" in row.find_element(By.CSS_SELECTOR, ".verified").text
    shot("4-archive")

    # Verify
    row.find_element(By.CSS_SELECTOR, "button.verify").click()
    wait(lambda: q("#archives tbody tr .verified").text == "ok", "verified ok")
    wait(lambda: qa("#tasks tr.task-ok[data-task^='verify-']"), "the verify task ok")
    shot("5-verified")

    # Restore into a new directory
    target = T + "/restored"
    q("#restore-target").send_keys(target)
    q("#archives tbody tr button.restore").click()
    wait(lambda: qa("#tasks tr.task-ok[data-task^='restore-']"), "the restore task ok")
    restored = os.path.join(target, "disk-drive-scsi0.raw")
    assert filecmp.cmp(restored, DISK, shallow=False), "restored disk differs"
    shot("6-restored")

    # Retention preview
    q("#keep-last").send_keys("1")
    q("#prune-preview").click()
    wait(lambda: q("#prune-table").is_displayed() and qa("#prune-table tbody tr"), "preview")
    assert "keep" in q("#prune-table tbody tr").text
    assert not q("#error").is_displayed(), q("#error").text
    shot("7-retention")

    # An error from the daemon is shown as it says it: restore onto an existing directory
    q("#archives tbody tr button.restore").click()
    wait(lambda: q("#error").is_displayed(), "the error banner")
    assert "already exists" in q("#error").text, q("#error").text
    shot("8-error")

    # Live restore of an uncompressed archive: new exports served at once, copied behind
    n_before = len(qa("#archives tbody tr"))
    Select(q("#backup-compress")).select_by_value("none")
    q("#backup-now").click()
    wait(lambda: len(qa("#archives tbody tr")) == n_before + 1, "the uncompressed archive")
    row = [r for r in qa("#archives tbody tr") if r.get_attribute("data-name").endswith(".vma")][0]
    live = T + "/live"
    q("#restore-target").clear()
    q("#restore-target").send_keys(live)
    row.find_element(By.CSS_SELECTOR, "button.restore-live").click()
    ok = wait(lambda: qa("#tasks tr.task-ok[data-task^='live-restore-']"), "the live restore ok")[0]
    assert "drive-scsi0-restored" in ok.find_element(By.CSS_SELECTOR, ".exports").text, ok.text
    assert filecmp.cmp(os.path.join(live, "disk-drive-scsi0.raw"), DISK, shallow=False), \
        "live-restored disk differs"
    shot("9-live-restored")
    logs()
finally:
    try:
        logs()
    finally:
        d.quit()

severe = [e for e in console if e.get("level") == "SEVERE"]
# the deliberate 409 above is logged by chromium as a failed resource load: that one only
expected = [e for e in severe if "409" in e.get("message", "") and "/restore" in e.get("message", "")]
others = [e for e in severe if e not in expected]
for e in console:
    print("console:", e.get("level"), e.get("message"))
assert len(expected) <= 1 and not others, "browser console errors: %r" % others
print("browser: backup %s, progress values %d, verified, restored, restored live" % (name, len(values)))
