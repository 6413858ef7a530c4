"""Network and Hub failures: one line naming what could not be fetched and the offline alternative; no retry log,
no traceback; files in the local cache still load offline."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from tta_bench import network
from tta_bench.cli import main
from tta_bench.errors import UserError
from tta_bench.teachers import TEACHERS

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--workers", "0", "--device", "cpu", "--no-progress", "--corruptions", "fog", "--limit", "1"]


@pytest.fixture
def offline_here() -> None:
    """Skips where the Hub answers; the probe runs with the test, never at import (collection makes no connection)."""
    if network.hub_reachable():
        pytest.skip("the Hub is reachable from this machine")


class ConnectError(Exception):  # how httpx names it; matched by name, as the clients' classes vary by version
    pass


class LocalEntryNotFoundError(Exception):
    pass


def _hub_failure() -> Exception:
    try:
        try:
            raise ConnectError("[Errno -2] Name or service not known")
        except ConnectError as inner:
            raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub") from inner
    except LocalEntryNotFoundError as outer:
        return outer


def test_network_failures_are_recognised_through_the_chain():
    assert "no network connection" in network.failure_reason(_hub_failure())
    assert network.failure_reason(OSError("We couldn't connect to 'https://huggingface.co'")) is not None
    assert network.failure_reason(ValueError("bad shape")) is None


def test_fetching_turns_a_failure_into_one_line_and_passes_other_errors(monkeypatch):
    monkeypatch.setattr(network, "hub_reachable", lambda: True)
    with pytest.raises(UserError) as error:
        with network.fetching("the weights of teacher timm:x", "a local checkpoint with --weights PATH"):
            raise _hub_failure()
    assert str(error.value).count("\n") == 0 and error.value.__cause__ is None and error.value.__suppress_context__
    assert str(error.value).startswith("could not fetch the weights of teacher timm:x: ")
    assert str(error.value).endswith("offline alternative: a local checkpoint with --weights PATH")
    with pytest.raises(ValueError, match="bad shape"):
        with network.fetching("x", "y"):
            raise ValueError("bad shape")


def test_unreachable_hub_means_the_clients_offline_mode_and_a_quiet_log(monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(network, "hub_reachable", lambda: False)
    before, level = hub.HF_HUB_OFFLINE, logging.getLogger("huggingface_hub").level
    with network.fetching("x", "y"):
        assert hub.HF_HUB_OFFLINE is True  # cached files load, missing ones fail at once (no retries)
        assert logging.getLogger("huggingface_hub").getEffectiveLevel() > logging.WARNING
    assert hub.HF_HUB_OFFLINE == before and logging.getLogger("huggingface_hub").level == level


def test_a_teacher_download_failure_is_one_line_on_the_command_line(monkeypatch, capsys, registries):
    def download(*_, **__):
        raise _hub_failure()

    monkeypatch.setattr(network, "hub_reachable", lambda: True)
    TEACHERS.override("timm", download, "a timm model whose download fails")
    assert main(["--teacher", "timm:resnet18.a1_in1k", *FAST, "--out", "/tmp/never-written-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "could not fetch the weights of teacher timm:resnet18.a1_in1k" in err and "--weights PATH" in err


@pytest.mark.usefixtures("offline_here")
def test_real_hub_teacher_offline(capfd, tmp_path):
    assert main(["--teacher", "timm:resnet18.a1_in1k", *FAST, "--out", str(tmp_path / "run")]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "Retrying" not in err and "--weights PATH" in err


@pytest.mark.usefixtures("offline_here")
def test_real_hub_dataset_offline(capfd, tmp_path):
    assert main(["--suite", "imagenet-r", "--source", "hub", "--teacher", "tiny", *FAST[:5],
                 "--out", str(tmp_path / "run")]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "Retrying" not in err
    assert "could not fetch the Hugging Face dataset" in err and "--data-root PATH" in err


@pytest.mark.slow
def test_importing_the_package_and_collecting_the_tests_connects_nowhere():
    """A probe at import time costs every pytest run up to its time-out where a firewall drops packets."""
    code = f"""
import socket, sys
def refuse(*args, **kwargs):
    raise AssertionError(f"network connection at import or collection: {{args}}")
socket.create_connection = refuse
socket.socket.connect = refuse
import pytest
import tta_bench.cli, tta_bench.network, tta_bench.data.hub, tta_bench.teachers, tta_bench.engine
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", {str(ROOT / "tests")!r}]))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "network connection" not in done.stdout + done.stderr
