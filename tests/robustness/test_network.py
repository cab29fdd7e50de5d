"""Nothing opens a network connection unless a loader was asked for an online source, and
HF_HUB_OFFLINE=1 is honoured even then."""
import socket
import subprocess
import sys

import pytest

import workbench as wb
from workbench import multilabel as ml


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(self, address, *a, **k):
        attempts.append(address)
        raise OSError(f"network use in a test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    return attempts


def test_importing_the_package_opens_no_connection():
    code = ("import socket\n"
            "def refuse(*a, **k): raise SystemExit('connection attempted at import')\n"
            "socket.socket.connect = refuse; socket.create_connection = refuse\n"
            "import workbench, workbench.multilabel, workbench.guidance, workbench.viz\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1000:]


def test_loaders_work_offline_from_the_mirror(no_network):
    wb.load("shapes", "train", subset=64)
    if wb.config.data_dir() is not None and (wb.config.data_dir() / "imagenet" / "real.json").is_file():
        assert len(ml.real_labels()) == ml.N_VAL
    assert no_network == []


def test_a_missing_label_file_with_download_requested_still_honours_hf_hub_offline(no_data_source, no_network):
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE is set"):
        ml.locate("real.json", download=True)
    with pytest.raises(FileNotFoundError, match="download=True"):
        ml.locate("real.json")
    assert no_network == []


def test_missing_dataset_offline_names_every_source(no_data_source, no_network):
    with pytest.raises(Exception, match="HF_HUB_OFFLINE|offline|WORKBENCH_DATA_DIR"):
        wb.load("cifar10", "train")
    assert no_network == []
