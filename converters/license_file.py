"""The source model's license travels with what is built from it: copied into the artifact, named in its manifest's
``files.license``, and pushed as a model-spec license layer (``tursi push``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from converters.cache import LICENSE_FILES


def copy_license(source: Path, out: Path) -> dict[str, str]:
    """``{"license": NAME}`` after copying the source folder's license file into ``out``; ``{}`` when it has none."""
    for name in LICENSE_FILES:
        if (source / name).is_file() and not (source / name).is_symlink():
            shutil.copyfile(source / name, out / name)
            return {"license": name}
    return {}
