"""Conversion child process: ``python -m converters SPEC_JSON``.

Emits one JSON event per line on stdout (stage, done, error); everything else goes to stderr.
Heavy imports (torch, transformers, optimum, onnxruntime) live only in this process.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from converters import cache
from converters.encoder_onnx import convert as convert_encoder
from tursi.core import failpoints

STAGES = ("export", "quantize", "verify", "publish")


def _emit(out: Any, event: dict[str, Any]) -> None:
    out.write(json.dumps(event) + "\n")
    out.flush()


def run(spec: dict[str, Any], out: Any) -> int:
    artifacts_dir = Path(spec["artifacts_dir"])
    key = spec["key"]
    started = time.monotonic()
    staging = cache.make_staging(artifacts_dir, key)
    _emit(out, {"event": "staging", "path": str(staging)})  # tursid removes it if this process dies

    def progress(stage: str, message: str) -> None:
        step = STAGES.index(stage) + 1 if stage in STAGES else 0
        _emit(
            out,
            {
                "event": "stage",
                "stage": stage,
                "step": step,
                "steps": len(STAGES),
                "message": message,
                "elapsed_s": round(time.monotonic() - started, 2),
            },
        )

    try:
        os.chdir(staging)  # the quantizer leaves temp files in its working directory
        digest = spec.get("manifest", {}).get("source", {}).get("digest")
        fields = _dispatch(spec["plan"], Path(spec["source"]), staging, progress, digest)
        progress("publish", "writing manifest and moving the artifact into the cache")
        manifest = {
            **spec["manifest"],
            **fields,
            "key": key,
            "size_bytes": cache.dir_size(staging),
            "conversion_s": round(time.monotonic() - started, 2),
            "created_at": time.time(),
        }
        cache.write_json_atomic(staging / cache.MANIFEST, manifest)
        manifest["size_bytes"] = cache.dir_size(staging)
        cache.write_json_atomic(staging / cache.MANIFEST, manifest)
        os.chdir(artifacts_dir)
        failpoints.hit("convert.before_publish")
        final = cache.publish(staging, artifacts_dir, key)
        _emit(out, {"event": "done", "artifact": str(final), "manifest": manifest})
        return 0
    except Exception as e:  # reported to tursid as a conversion error, never a traceback to the user
        traceback.print_exc(file=sys.stderr)
        _emit(out, {"event": "error", "code": "conversion_failed", "detail": f"{type(e).__name__}: {e}"})
        return 1
    finally:
        if staging.exists():
            os.chdir(artifacts_dir)
            shutil.rmtree(staging, ignore_errors=True)


def _dispatch(plan: dict[str, Any], source: Path, out: Path, progress: Any, digest: str | None) -> dict[str, Any]:
    converter = plan["converter"]
    if converter == "hf-onnx-int8":
        return convert_encoder(source, out, plan, progress)
    if converter == "gguf-import":
        from converters.gguf import import_file

        progress("publish", f"importing {source.name} as is")
        return import_file(source, out, digest)
    if converter == "gguf-quantize":
        from converters.gguf import requantize

        return requantize(source, out, plan, progress)
    if converter == "hf-gguf":
        from converters.hf_gguf import convert as convert_llm

        return convert_llm(source, out, plan, progress)
    raise ValueError(f"no converter named {converter}")


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if len(argv) != 2:
        print("usage: python -m converters SPEC_JSON", file=sys.stderr)  # noqa: T201 - a CLI usage line
        return 64
    # keep our protocol on stdout clean: libraries that print go to stderr
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return run(json.loads(argv[1]), protocol)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
