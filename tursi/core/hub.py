"""Hugging Face Hub references: the local cache first, then the hub (HF_ENDPOINT for mirrors).

Runs in tursid's executor. huggingface_hub honours HF_HUB_OFFLINE, HF_ENDPOINT and HF_HOME from the
daemon's environment. Only safetensors (plus configs and tokenizers) are fetched unless pickle
weights are explicitly allowed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tursi.core.errors import ModelNotFound, UnsafeModel

log = logging.getLogger(__name__)

SAFE_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "1_Pooling/*", "*/config.json"]
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl"]
WEIGHTS = (".safetensors", ".gguf", ".onnx")


def fetch(repo_id: str, *, revision: str | None = None, allow_pickle: bool = False) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = SAFE_PATTERNS + (PICKLE_PATTERNS if allow_pickle else [])
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    _refuse_pickle_only(repo_id, revision, allow_pickle)
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as e:
        raise ModelNotFound(
            f"{repo_id}{'@' + revision if revision else ''} is not in the Hugging Face cache and could not be "
            f"downloaded ({type(e).__name__})",
            hint="download it on a connected machine, or set HF_ENDPOINT to a mirror",
        ) from e
    log.info("downloaded repo=%s revision=%s to %s", repo_id, revision, folder)
    return Path(folder)


def _refuse_pickle_only(repo_id: str, revision: str | None, allow_pickle: bool) -> None:
    """Look at the repo's file list before downloading anything."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = HfApi().model_info(repo_id, revision=revision)
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise ModelNotFound(
            f"{repo_id} could not be found on the hub ({type(e).__name__})",
            hint="check the id, or set HF_ENDPOINT to a mirror; HF_HUB_OFFLINE=1 uses the cache only",
        ) from e
    files = [s.rfilename for s in info.siblings or []]
    if any(f.endswith(WEIGHTS) for f in files) or allow_pickle:
        return
    if any(f.endswith(tuple(p[1:] for p in PICKLE_PATTERNS)) for f in files):
        raise UnsafeModel(
            f"{repo_id} has only pickle weights ({', '.join(f for f in files if f.endswith('.bin'))[:80]}); "
            "Tursi loads safetensors, GGUF or ONNX",
            hint="--allow-pickle loads them anyway (pickle can run code: only for sources you trust)",
        )
