from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from bench.cpu import POSTGRES_NAME, CpuMeter, CpuShare

# Spins for 0.4 CPU-seconds, then sleeps.
SPIN = (
    "import time\n"
    "end = time.process_time() + 0.4\n"
    "while time.process_time() < end: pass\n"
    "time.sleep(30)"
)


def test_meter_charges_a_busy_process_to_its_part():
    child = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        meter = CpuMeter({"spinner": [child.pid]})
        meter.start(time.monotonic())
        _wait_until_spun(child.pid)
        share = meter.stop(time.monotonic())
    finally:
        child.kill()
        child.wait()

    assert set(share.by_part) == {"spinner", POSTGRES_NAME}
    # The child's start-up may fall before the meter's; the spinning does not.
    assert 0.3 <= share.by_part["spinner"] <= 0.6
    assert share.machine_busy >= share.by_part["spinner"] * 0.9
    assert 0.0 < share.busy_share <= 1.0


@pytest.mark.parametrize("children_part", [None, "children"])
def test_meter_charges_a_child_started_during_the_stretch_with_its_parent(
    children_part: str | None,
) -> None:
    # The parent sleeps, then starts the spinner, as a worker starts its child.
    parent_script = (
        "import subprocess, sys, time\n"
        "time.sleep(0.5)\n"
        f"subprocess.run([sys.executable, '-c', {SPIN!r}])"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_script])
    try:
        meter = CpuMeter(
            {"worker": [parent.pid]},
            children_parts={"worker": children_part} if children_part else None,
        )
        meter.start(time.monotonic())
        spinner = _wait_for_child(parent.pid)
        _wait_until_spun(spinner)
        share = meter.stop(time.monotonic())
    finally:
        for process in psutil.Process(parent.pid).children(recursive=True):
            process.kill()
        parent.kill()
        parent.wait()

    if children_part is None:
        assert share.by_part["worker"] >= 0.35
    else:
        assert share.by_part[children_part] >= 0.35
        assert share.by_part["worker"] < 0.35


def _wait_for_child(pid: int) -> int:
    deadline = time.monotonic() + 30
    while not (children := psutil.Process(pid).children()):
        assert time.monotonic() < deadline, "the parent started no child"
        time.sleep(0.05)
    return children[0].pid


def _wait_until_spun(pid: int) -> None:
    # On a busy machine the spinning takes longer than its CPU time.
    deadline = time.monotonic() + 30
    while sum(psutil.Process(pid).cpu_times()[:2]) < 0.4:
        assert time.monotonic() < deadline, "the spinner never got the CPU"
        time.sleep(0.05)


def test_per_event_figures_split_the_rest_to_other_processes():
    share = CpuShare(
        seconds=2.0,
        by_part={"workers": 1.0, "postgres": 0.5},
        machine_busy=2.0,
        cores=2,
    )

    assert share.per_event_us(1000) == pytest.approx(
        {"workers": 1000.0, "postgres": 500.0, "other processes": 500.0}
    )
    assert share.busy_share == pytest.approx(0.5)


def test_meter_refuses_to_stop_before_it_started():
    with pytest.raises(RuntimeError, match="before it was started"):
        CpuMeter({}).stop(time.monotonic())
