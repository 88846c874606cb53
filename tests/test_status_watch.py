"""``edgegov status`` and ``edgegov watch`` against a real service on a real Mosquitto, as
an operator runs them: words and units, online/offline from the will, exit codes, and the
same TLS/username options as ``run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from mosquitto_fixture import USERS, needs_mosquitto, secured_broker
from service_harness import DEVICE, ServiceProcess

pytestmark = [needs_mosquitto, pytest.mark.timeout(90)]


def edgegov(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgegov_cli.main", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "250"})  # a wide terminal


def status(url: str, *extra: str, device: str = DEVICE) -> subprocess.CompletedProcess:
    return edgegov("status", "--device", device, "--mqtt", url, *extra)


def rows(out: str) -> dict[str, str]:
    table = {}
    for line in out.splitlines():
        label, _, value = line.strip().partition("  ")
        table[label.strip()] = value.strip()
    return table


def wait_online(url: str, *extra: str, timeout_s: float = 15) -> dict[str, str]:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        res = status(url, *extra)
        if res.returncode == 0:
            return rows(res.stdout)
        time.sleep(0.2)
    raise AssertionError(f"never online: {res.stdout} {res.stderr}")


@pytest.fixture
def service(tmp_path, broker):
    svc = ServiceProcess(tmp_path, broker.url).start()
    yield svc
    svc.stop()


def test_status_of_a_running_device_in_words_and_units(broker, service):
    table = wait_online(broker.url)
    assert table["status"] == "online" and table["state"] == "TRIPPED"
    # Booted tripped, no plant report yet: the never-seen e-stop input counts as pressed.
    assert table["trip causes"] == "boot, estop_input"
    assert table["link"] == "down" and table["mode"] == "run"
    assert table["outputs"] == "coolant=0 %, press=0 mm, spindle=0 rpm"
    assert table["verdicts"].startswith("ALLOW=0 CLAMP=0 REJECT=0")
    assert len(table["envelope"]) == 64
    assert table["uptime"].endswith(" s (since " + table["uptime"].split("since ")[1])
    assert "% of 64 sectors" in table["lineage"]  # the harness runs 64-sector rings
    assert table["last checkpoint"].startswith("seq ")


def test_op_answers_in_words_and_status_counts_commands(broker, service, tmp_path):
    wait_online(broker.url)
    res = edgegov("op", "reset", "--device", DEVICE, "--key", str(service.key_file),
                  "--mqtt", broker.url)
    assert res.returncode == 1, res.stdout + res.stderr  # refused: causes present
    # the boot cause never blocks a reset; the e-stop input, never received, does
    assert res.stdout.startswith("reset refused: cause_present (blocked by: estop_input); "
                                 "state TRIPPED")
    import paho.mqtt.publish as publish

    for seq in (1, 2, 3):
        publish.single(f"edgegov/{DEVICE}/cmd", json.dumps({"seq": seq, "values": {}}),
                       hostname="127.0.0.1", port=broker.port)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        table = rows(status(broker.url).stdout)
        if "(3 commands)" in table.get("verdicts", ""):
            break
        time.sleep(0.5)  # counters reach the retained state with the next refresh (5 s)
    assert table["verdicts"].endswith("(3 commands)"), table


def test_status_says_offline_from_the_will_and_after_an_orderly_stop(broker, tmp_path):
    svc = ServiceProcess(tmp_path, broker.url).start()
    try:
        wait_online(broker.url)
        svc.kill()  # no DISCONNECT: the broker publishes the will
        end = time.monotonic() + 15
        while (res := status(broker.url)).returncode != 1 and time.monotonic() < end:
            time.sleep(0.2)
        assert res.returncode == 1
        assert rows(res.stdout)["status"] == "OFFLINE (connection lost)"
        svc.start()
        wait_online(broker.url)
        assert svc.terminate() == 0
        res = status(broker.url)
        table = rows(res.stdout)
        assert res.returncode == 1 and table["status"] == "OFFLINE (stopped)"
        assert table["state"] == "TRIPPED"  # the last state stays known after a stop
    finally:
        svc.stop()


def test_status_of_a_device_that_never_ran(broker):
    res = status(broker.url, "--timeout", "0.5", device="never-ran")
    assert res.returncode == 4 and "Traceback" not in res.stderr
    assert res.stderr.strip() == (f"no state for device never-ran on {broker.url} (topic "
                                  "edgegov/never-ran/state): it never ran on this broker, or "
                                  "it uses another --prefix")


def test_watch_json_follows_state_and_events_of_every_device(broker, service):
    wait_online(broker.url)
    watcher = subprocess.Popen([sys.executable, "-m", "edgegov_cli.main", "watch", "--mqtt",
                                broker.url, "--json", "--seconds", "4"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    edgegov("op", "arm", "--device", DEVICE, "--key", str(service.key_file),
            "--mqtt", broker.url)  # refused: arm is not valid while TRIPPED
    out, err = watcher.communicate(timeout=20)
    assert watcher.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["kind"] == "state" and lines[0]["device"] == DEVICE
    events = [x["doc"] for x in lines if x["kind"] == "event"]
    refused = next(e for e in events if e["event"] == "arm_refused")  # named after the action
    assert refused["code"] == 6 and refused["reason"] == "not_allowed"


def test_watch_live_table_names_the_device(broker, service):
    wait_online(broker.url)
    res = edgegov("watch", "--device", DEVICE, "--mqtt", broker.url, "--seconds", "1.5")
    assert res.returncode == 0, res.stderr
    assert DEVICE in res.stdout and "TRIPPED" in res.stdout and "boot, estop_input" in res.stdout


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    b = secured_broker(tmp_path_factory.mktemp("mosquitto-tls"), DEVICE)
    yield b
    b.stop()


def test_status_over_tls_with_a_username(secure, tmp_path):
    pw = tmp_path / "gov.pw"
    pw.write_text(USERS["gov"])
    svc = ServiceProcess(tmp_path, secure.url, "--username", "gov", "--password-file",
                         str(pw), "--ca", secure.ca_file).start()
    try:
        planner_pw = tmp_path / "planner.pw"
        planner_pw.write_text(USERS["planner"])  # the planner may read the state topic
        table = wait_online(secure.url, "--username", "planner", "--password-file",
                            str(planner_pw), "--ca", secure.ca_file)
        assert table["state"] == "TRIPPED"
    finally:
        svc.stop()
