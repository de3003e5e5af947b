"""``vitl weights list | fetch | bundle | import`` end to end, offline; ``vitl cache export``'s
SHARDS check."""

import os
import threading

import pytest

import vitl.cli
from vitl.backbones import weights as weights_module
from vitl.backbones import weights_file_name
from vitl.cli import main

MOBILENET = weights_file_name("mobilenetv2")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VITL_HOME", str(tmp_path / "vitl"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def fake_download(spec):
        file_name = weights_file_name(spec)
        if file_name != MOBILENET:
            raise OSError("simulated: no network")
        path = tmp_path / "keras" / "models" / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"pretend weights")
        return path

    monkeypatch.setattr(weights_module, "_download", fake_download)
    # Only this sub-command: the others are tested (and may be mid-edit) elsewhere.
    monkeypatch.setattr(vitl.cli, "COMMANDS", ("weights",))
    return tmp_path


def test_list_shows_every_backbone_and_its_source(home, capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("resnet101v2", "inceptionv3", "mobilenetv2-tv"):
        assert name in out
    assert "299px" in out and "2048" in out
    assert "not available offline" in out
    assert "offline-package" in out


def test_fetch_copies_into_vitl_home(home, capsys):
    assert main(["weights", "fetch", "mobilenetv2"]) == 0
    target = home / "vitl" / "weights" / MOBILENET
    assert target.read_bytes() == b"pretend weights"
    assert "from download" in capsys.readouterr().out
    assert main(["weights", "fetch", "mobilenetv2"]) == 0
    assert "from vitl-home" in capsys.readouterr().out


def test_fetch_failure_explains_the_offline_route(home, capsys):
    assert main(["weights", "fetch", "resnet50v2"]) == 2
    err = capsys.readouterr().err
    assert "simulated: no network" in err and "vitl weights import" in err


def test_bundle_then_import(home, capsys, monkeypatch):
    out = home / "b.zip"
    assert main(["weights", "bundle", str(out), "--backbone", "mobilenetv2"]) == 0
    assert f"weights/{MOBILENET}" in capsys.readouterr().out
    monkeypatch.setenv("VITL_HOME", str(home / "offline"))
    assert main(["weights", "import", str(out)]) == 0
    assert (home / "offline" / "weights" / MOBILENET).read_bytes() == b"pretend weights"
    assert main(["weights", "import", str(home / "missing.zip")]) == 2
    assert "vitl weights bundle" in capsys.readouterr().err


@pytest.mark.parametrize("where, received", [("folder", "the folder"),
                                             ("file/b.zip", "cannot write in")])
def test_bundle_into_an_unusable_place_is_one_line_up_front(home, capsys, where, received):
    (home / "folder").mkdir()
    (home / "file").write_text("x")
    assert main(["weights", "bundle", str(home / where), "--backbone", "mobilenetv2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Fix:" in err, err
    assert err.startswith("vitl weights: error: OUT.zip: expected a ") and received in err, err


def test_import_refuses_a_fifo_without_blocking(home, capsys):
    fifo = home / "planted.zip"
    os.mkfifo(fifo)
    codes = []
    worker = threading.Thread(target=lambda: codes.append(main(["weights", "import", str(fifo)])),
                              daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # blocked reading the FIFO: open its other end to let it go
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=30)
    err = capsys.readouterr().err
    assert codes == [2] and err.count("\n") == 1, err
    assert f"BUNDLE: expected a bundle zip or unpacked bundle folder, received '{fifo} (a FIFO" in err


def test_cache_export_refuses_a_file_as_shards(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["cache", "export", str(tmp_path / "f"), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Fix:" in err, err
    assert f"SHARDS: expected a folder path, received 'the file {tmp_path / 'f'}'" in err
