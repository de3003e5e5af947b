"""Weight resolution: explicit file, VITL_HOME, Keras cache, download, and the failure message."""

import dataclasses
import socket

import pytest
import together

from vitl._hashing import sha256_file
from vitl.backbones import BACKBONES, WeightsUnavailableError, get_backbone, resolve_weights
from vitl.backbones import weights as weights_module
from vitl.backbones.weights import WeightsSource, locate_weights, weights_file_name

MOBILENET = weights_file_name("mobilenetv2")


@pytest.fixture(autouse=True)
def homes(tmp_path, monkeypatch):
    """Empty VITL_HOME and KERAS_HOME for every test."""
    monkeypatch.setenv("VITL_HOME", str(tmp_path / "vitl"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path


def no_download(monkeypatch, message="simulated network failure"):
    calls = []

    def fail(spec):
        calls.append(weights_file_name(spec))
        raise OSError(message)

    monkeypatch.setattr(weights_module, "_download", fail)
    return calls


def put(path, content=b"weights"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_registry_names_keras_weights_of_every_keras_backbone():
    for name in ("resnet101v2", "resnet50v2", "mobilenetv2", "inceptionv3", "efficientnetb0"):
        spec = get_backbone(name)
        assert spec.weights_url.startswith("https://storage.googleapis.com/")
        assert weights_file_name(spec).endswith(".h5") and spec.weights_url.endswith(
            "/" + weights_file_name(spec))
        assert spec.weights_md5 is None or len(spec.weights_md5) == 32
    assert get_backbone("resnet101v2").weights_md5 == "c0ed64b8031c3730f411d2eb4eea35b5"


def test_random_and_explicit_file(tmp_path):
    assert resolve_weights("mobilenetv2", None) == WeightsSource("random", None, None)
    path = put(tmp_path / "mine.h5", b"abc")
    source = resolve_weights("mobilenetv2", str(path))
    assert (source.kind, source.path) == ("file", str(path))
    assert source.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(FileNotFoundError, match="check the path"):
        resolve_weights("mobilenetv2", str(tmp_path / "missing.h5"))


def test_vitl_home_before_keras_cache(homes, monkeypatch):
    calls = no_download(monkeypatch)
    cached = put(homes / "keras" / "models" / MOBILENET, b"from keras")
    source = resolve_weights("mobilenetv2")
    assert (source.kind, source.path, source.sha256) == ("keras-cache", str(cached),
                                                          sha256_file(cached))
    own = put(homes / "vitl" / "weights" / MOBILENET, b"from vitl")
    source = resolve_weights("mobilenetv2")
    assert (source.kind, source.path) == ("vitl-home", str(own))
    assert locate_weights("mobilenetv2") == ("vitl-home", own)
    assert calls == []


def test_download_is_last_and_reported(homes, monkeypatch):
    downloaded = put(homes / "keras" / "models" / "elsewhere.h5", b"downloaded")
    monkeypatch.setattr(weights_module, "_download", lambda spec: downloaded)
    source = resolve_weights("resnet50v2")
    assert (source.kind, source.path) == ("download", str(downloaded))
    assert locate_weights("resnet50v2") is None  # nothing under the expected name


def test_unavailable_message_lists_attempts_and_fixes(homes, monkeypatch):
    calls = no_download(monkeypatch)
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_weights("resnet101v2")
    message = str(info.value)
    file_name = weights_file_name("resnet101v2")
    assert calls == [file_name]
    assert str(homes / "vitl" / "weights" / file_name) in message
    assert str(homes / "keras" / "models" / file_name) in message
    assert "simulated network failure" in message
    for fix in ("connect to the internet", "vitl weights bundle", "vitl weights import",
                "weights=PATH", "'mobilenetv2-tv'"):
        assert fix in message
    assert isinstance(info.value, RuntimeError)


def test_download_false_never_downloads(monkeypatch):
    calls = no_download(monkeypatch)
    with pytest.raises(WeightsUnavailableError, match="skipped: download=False"):
        resolve_weights("mobilenetv2", download=False)
    assert calls == []


def test_file_with_wrong_known_hash_is_skipped(homes, monkeypatch):
    no_download(monkeypatch)
    file_name = weights_file_name("resnet50v2")
    put(homes / "vitl" / "weights" / file_name, b"not the real weights")
    with pytest.warns(UserWarning, match="published"), \
            pytest.raises(WeightsUnavailableError, match="md5 .* is not Keras' published"):
        resolve_weights("resnet50v2")


@pytest.fixture
def unreachable_origin(monkeypatch):
    """Point the download at a host that can never resolve (RFC 2606 .invalid)."""
    spec = get_backbone("mobilenetv2")
    url = "https://weights.vitl-test.invalid/" + weights_file_name(spec)
    monkeypatch.setitem(BACKBONES, "mobilenetv2", dataclasses.replace(spec, weights_url=url))


def test_real_download_attempt_fails_fast_with_a_clear_message(unreachable_origin, capsys):
    # No monkeypatched download: keras.utils.get_file runs for real and must fail, not hang,
    # and its error becomes the same message, with the socket timeout restored.
    before = socket.getdefaulttimeout()
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_weights("mobilenetv2")
    message = str(info.value)
    assert "download: https://weights.vitl-test.invalid/" in message
    assert "gaierror" in message and "(weights.vitl-test.invalid)" in message
    assert socket.getdefaulttimeout() == before
    # Offline nothing claims a download is happening (get_file would print "Downloading data").
    assert "Downloading" not in capsys.readouterr().out


def test_describe():
    assert "random" in WeightsSource("random", None, None).describe()
    assert WeightsSource("vitl-home", "/w.h5", "ab" * 32).describe() == \
        "vitl-home: /w.h5 (sha256 abababababab...)"


_DOWNLOAD_AT_ONCE = """
import dataclasses, hashlib, os, sys, time
import keras.src.utils.file_utils as keras_files
from vitl.backbones import get_backbone
from vitl.backbones import weights
go, delay = sys.argv[1], float(sys.argv[2])
data = bytes(range(256)) * 1000
spec = dataclasses.replace(get_backbone("resnet101v2"), weights_md5=hashlib.md5(data).hexdigest(),
                           weights_url="https://example.invalid/fake_notop.h5")
weights.resolve_host = lambda url: None

def slow_urlretrieve(url, target, hook=None):  # Keras writes the download in place
    with open(target, "wb") as handle:
        for i in range(0, len(data), 4096):
            handle.write(data[i:i + 4096])
            handle.flush()
            time.sleep(0.005)

keras_files.urlretrieve = slow_urlretrieve
print("ready", flush=True)
while not os.path.exists(go):
    pass
time.sleep(delay)  # the next notebook starts while the first is downloading
print(hashlib.md5(weights._download(spec).read_bytes()).hexdigest() == spec.weights_md5)
"""


def test_notebooks_downloading_weights_at_once_both_get_them(tmp_path):
    # Keras' get_file downloads in place: a second download truncated the file the first one
    # was checking ("Incomplete or corrupted file detected") or already loading.
    go = tmp_path / "go"
    workers = together.start(_DOWNLOAD_AT_ONCE, [(go, delay) for delay in (0, 0.15, 0.3)],
                             KERAS_HOME=str(tmp_path / "keras"), TF_CPP_MIN_LOG_LEVEL="2")
    together.release(workers, go)  # all imported: start together
    assert [out.split()[-1:] for out in together.outputs(workers)] == [["True"]] * 3
