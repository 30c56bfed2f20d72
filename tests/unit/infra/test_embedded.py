"""The embedded stack refuses a data folder another stack is using."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.embedded import EmbeddedStack, EmbeddedStackError, running_postmaster


def pid_file(data_dir: Path, text: str) -> None:
    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True)
    (pgdata / "postmaster.pid").write_text(text)


def test_a_folder_whose_server_is_alive_is_refused(tmp_path: Path) -> None:
    pid_file(tmp_path, f"{os.getpid()}\n{tmp_path}/postgres\n")

    with pytest.raises(EmbeddedStackError) as raised:
        EmbeddedStack(tmp_path).start(timeout_s=5)

    assert str(raised.value) == (
        f"an embedded stack already runs in {tmp_path.resolve()} (postgres pid"
        f" {os.getpid()}); use it, stop it, or choose another MENTORFLOW_DATA_DIR"
    )


def test_a_pid_file_left_by_a_dead_server_is_not_a_running_stack(
    tmp_path: Path,
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid_file(tmp_path, f"{dead.pid}\n")

    assert running_postmaster(tmp_path / "postgres") is None


@pytest.mark.parametrize("text", ["", "not a pid\n"])
def test_no_or_an_unreadable_pid_file_is_no_running_server(
    tmp_path: Path, text: str
) -> None:
    assert running_postmaster(tmp_path / "postgres") is None
    pid_file(tmp_path, text)
    assert running_postmaster(tmp_path / "postgres") is None
