"""What tursid hands a worker it starts: the deployment spec's worker fields and where to serve what."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tursi.core.errors import InvalidSpec
from tursi.core.spec import DeploymentSpec, option_of, spec_fields


@dataclass(frozen=True)
class WorkerSettings:
    """What tursid hands a worker it starts, as one ``--settings=JSON`` argument: the spec's worker fields and
    where to serve what. The API key travels only as its sha256."""

    name: str
    model_ref: str
    artifact: str
    host: str
    port: int
    spec: DeploymentSpec = field(default_factory=DeploymentSpec)
    api_key_sha256: str | None = None
    listen_fd: int | None = None  # a listening socket tursid bound and handed over (it held the port while idle)
    gateway_sha256: str | None = None  # tursid's gateway proves itself with the secret of this digest

    def to_json(self) -> str:
        serving = {f.name: getattr(self.spec, f.name) for f in spec_fields() if option_of(f).worker}
        where = {"name": self.name, "model_ref": self.model_ref, "artifact": self.artifact, "host": self.host}
        handed: dict[str, int | str] = {"listen_fd": self.listen_fd} if self.listen_fd is not None else {}
        if self.gateway_sha256 is not None:
            handed["gateway_sha256"] = self.gateway_sha256
        return json.dumps(
            {**where, "port": self.port, "api_key_sha256": self.api_key_sha256, **handed, "serving": serving}
        )

    @classmethod
    def from_json(cls, text: str) -> WorkerSettings:
        try:
            d = json.loads(text)
        except ValueError as e:
            raise InvalidSpec(f"worker settings are not JSON: {e}", param="settings") from None
        if not isinstance(d, dict) or not isinstance(d.get("serving"), dict):
            raise InvalidSpec("worker settings must be an object with 'serving'", param="settings")
        texts = ("name", "model_ref", "artifact", "host")
        if not all(isinstance(d.get(k), str) for k in texts) or type(d.get("port")) is not int:
            raise InvalidSpec("worker settings need name, model_ref, artifact, host and port", param="settings")
        digest = d.get("api_key_sha256")
        if digest is not None and not isinstance(digest, str):
            raise InvalidSpec("'api_key_sha256' must be a string", param="settings")
        fd = d.get("listen_fd")
        if fd is not None and (type(fd) is not int or fd < 0):
            raise InvalidSpec("'listen_fd' must be a file descriptor number", param="settings")
        gateway = d.get("gateway_sha256")
        if gateway is not None and not isinstance(gateway, str):
            raise InvalidSpec("'gateway_sha256' must be a string", param="settings")
        spec = DeploymentSpec.parse(d["serving"], [f.name for f in spec_fields() if option_of(f).worker])
        return cls(d["name"], d["model_ref"], d["artifact"], d["host"], d["port"], spec, digest or None, fd, gateway)
