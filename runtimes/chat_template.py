"""Chat templates from GGUF metadata, rendered in Jinja's immutable sandbox.

A template is checked when the model loads: one that reaches for Python internals
(``__globals__``, ``__class__``, ...) raises the sandbox's SecurityError there and the model is
refused; it never runs against a request.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

# Fields of a message that come from the client: rendered by the template, never trusted as control text.
UNTRUSTED_FIELDS = ("content", "name")
Piece = tuple[str, str | None]  # (text, None) from the template itself, (text, "messages[i].field") from the client

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


class TemplateRejected(ValueError):
    """The template does not render one request's messages (its own raise_exception, a missing field)."""


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
        except TemplateRejected as e:
            cause = e.__cause__
            if isinstance(cause, SecurityError):
                raise TemplateRefused(f"chat template refused by the sandbox: {cause}") from cause
            raise TemplateRefused(f"chat template does not render: {type(cause).__name__}: {cause}") from cause
        except TemplateError as e:
            raise TemplateRefused(f"chat template does not render: {type(e).__name__}: {e}") from e
        return tmpl

    @property
    def tool_format(self) -> str | None:
        """The template's own tool convention, when it renders ``tools`` itself: ``"hermes"`` (calls as
        ``<tool_call>`` blocks: Qwen, Hermes), ``"llama3"`` (one ``{"name", "parameters"}`` object, results as
        ``ipython`` turns: Llama 3.1-3.3), ``"mistral"`` (``[TOOL_CALLS]`` and a JSON list: Mistral); None when
        it knows no tools (Tursi then describes them itself)."""
        if "tools" not in self.source:
            return None
        if "<tool_call>" in self.source:
            return "hermes"
        if "ipython" in self.source or "<|python_tag|>" in self.source:
            return "llama3"
        if "[TOOL_CALLS]" in self.source:
            return "mistral"
        return None

    def render(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        from jinja2 import TemplateError

        extra = {"tools": tools} if tools else {}
        try:
            return str(
                self._compiled.render(
                    messages=messages,
                    add_generation_prompt=add_generation_prompt,
                    bos_token=self.bos_token,
                    eos_token=self.eos_token,
                    **extra,
                )
            )
        except (TemplateError, TypeError, ValueError) as e:  # raise_exception('...') included
            raise TemplateRejected(f"the model's chat template refuses these messages: {e}") from e

    def render_pieces(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> tuple[str, list[Piece] | None]:
        """The prompt, and the same prompt cut into the template's own text and the client's text.

        Each client string is replaced by a random marker, the template renders the markers, and the cut is
        kept only when putting the strings back gives exactly the prompt (None when the template transforms
        or inspects them beyond that, e.g. ``| trim`` on text with outer whitespace that a second try with the
        whitespace kept outside the marker cannot explain).
        """
        text = self.render(messages, tools=tools)
        for keep_outer_space in (False, True):
            pieces = self._marked(messages, keep_outer_space, tools)
            if pieces is not None and "".join(p for p, _ in pieces) == text:
                return text, pieces
        return text, None

    def _marked(
        self, messages: list[dict[str, Any]], keep_outer_space: bool, tools: list[dict[str, Any]] | None = None
    ) -> list[Piece] | None:
        nonce = secrets.token_hex(8)
        values: dict[str, tuple[str, str]] = {}
        marked = []
        for i, msg in enumerate(messages):
            copy = dict(msg)
            for key in UNTRUSTED_FIELDS:
                value = msg.get(key)
                if isinstance(value, str) and value:
                    mark = f"\ue000{nonce}.{len(values)}\ue001"
                    core = value.strip() if keep_outer_space else value
                    values[mark] = (core, f"messages[{i}].{key}")
                    copy[key] = value.replace(core, mark, 1) if core else value
            marked.append(copy)
        try:
            rendered = self.render(marked, tools=tools)
        except Exception:  # a template that inspects the text (and raises on a marker) cannot be cut
            return None
        pieces: list[Piece] = []
        for part in re.split(f"(\ue000{nonce}\\.\\d+\ue001)", rendered):
            if part in values:
                pieces.append(values[part])
            elif part:
                pieces.append((part, None))
        return pieces


def _raise(message: str) -> None:
    raise ValueError(message)
