"""Chat templates from GGUF metadata, rendered in Jinja's immutable sandbox.

A template is checked when the model loads: one that reaches for Python internals
(``__globals__``, ``__class__``, ...) raises the sandbox's SecurityError there and the model is
refused; it never runs against a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Used when a GGUF carries no template: ChatML, which most small instruct models were tuned on.
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

PROBE_MESSAGES = [
    {"role": "system", "content": "You are a test."},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi"},
    {"role": "user", "content": "Bye"},
]


class TemplateRefused(Exception):
    """The template tried something the sandbox forbids, or does not render."""


@dataclass
class ChatTemplate:
    source: str
    bos_token: str
    eos_token: str
    from_model: bool
    _compiled: Any = None

    @classmethod
    def load(cls, source: str | None, bos_token: str, eos_token: str) -> ChatTemplate:
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
        env.globals["raise_exception"] = _raise
        tmpl = cls(source or CHATML, bos_token, eos_token, from_model=bool(source))
        try:
            tmpl._compiled = env.from_string(tmpl.source)
            tmpl.render(PROBE_MESSAGES)  # a hostile template fails here, at load, in the sandbox
        except SecurityError as e:
            raise TemplateRefused(f"chat template refused by the sandbox: {e}") from e
        except (TemplateError, TypeError, ValueError) as e:
            raise TemplateRefused(f"chat template does not render: {type(e).__name__}: {e}") from e
        return tmpl

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        return str(
            self._compiled.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        )


def _raise(message: str) -> None:
    raise ValueError(message)
