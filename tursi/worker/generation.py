"""OpenAI chat/completions routes on a llama.cpp runtime: JSON or SSE; the engine decodes up to --parallel at once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiohttp import web

from runtimes.chat_template import TemplateRejected
from runtimes.llama_engine import EngineClosed
from runtimes.llama_runtime import Chunk, ControlText
from runtimes.llama_runtime import ContextLengthExceeded as RuntimeContextExceeded
from runtimes.llama_sampling import GrammarRejected
from runtimes.protocol import TextGenerator
from tursi.core.errors import ContextLengthExceeded, InvalidRequest, NotReady
from tursi.http.guards import read_json
from tursi.http.streaming import EventStream
from tursi.worker.openai_params import GenerationRequest, parse_generation, parse_messages, parse_prompt
from tursi.worker.state import STATE, WorkerState, check_model, observed, require_task
from tursi.worker.structured import prompt_messages

routes = web.RouteTableDef()


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, chat=True)


@routes.post("/v1/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, chat=False)


async def _serve(request: web.Request, chat: bool) -> web.StreamResponse:
    st = request.app[STATE]
    with observed(st, "/v1/chat/completions" if chat else "/v1/completions") as obs:
        runtime = require_task(st, "chat")
        body = await read_json(request)
        check_model(st, body)
        gen = parse_generation(body, chat)
        source: list[dict[str, Any]] | str = (
            prompt_messages(parse_messages(body), gen.tools) if chat else parse_prompt(body)
        )
        # the gate first: --max-queue bounds rendering and tokenizing too, which run in the model thread
        async with st.gate.slot():
            prompt = await asyncio.get_running_loop().run_in_executor(st.executor, _prompt, runtime, source, gen)
            resp, obs.tokens = await _run(request, st, runtime, prompt, gen, chat)
        obs.status = resp.status
        return resp


def _prompt(runtime: TextGenerator, source: list[dict[str, Any]] | str, gen: GenerationRequest) -> list[int]:
    """Runs in the model thread: the prompt's tokens, checked against the context."""
    try:
        prompt: list[int] = runtime.chat_prompt(source) if isinstance(source, list) else runtime.tokenize_prompt(source)
        runtime.check_context(prompt, gen.sampling.max_tokens)
    except ControlText as e:
        raise InvalidRequest(str(e), param=e.field) from None
    except TemplateRejected as e:
        raise InvalidRequest(str(e), param="messages") from None
    except RuntimeContextExceeded as e:
        raise ContextLengthExceeded(
            str(e), prompt_tokens=e.prompt_tokens, max_tokens=e.max_tokens, n_ctx=e.n_ctx
        ) from None
    return prompt


async def _run(
    request: web.Request, st: WorkerState, runtime: TextGenerator, prompt: list[int], gen: GenerationRequest, chat: bool
) -> tuple[web.StreamResponse, int]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    transport = request.transport

    def gone() -> bool:  # polled by the engine each step: a client that left frees its slot
        return transport is None or transport.is_closing()

    def emit(item: Chunk | BaseException) -> None:  # from the engine thread
        loop.call_soon_threadsafe(queue.put_nowait, item)

    job = runtime.submit(prompt, gen.sampling, emit, gone=gone, cache_prompt=gen.cache_prompt)
    try:
        writer = _Writer(request, st, runtime, chat, gen, len(prompt))
        async with writer.stream:  # an error before the first chunk keeps its status; after it, an SSE error
            while True:
                item = await queue.get()
                if isinstance(item, EngineClosed):
                    raise NotReady(str(item))
                if isinstance(item, GrammarRejected):
                    raise InvalidRequest(f"the output format: {item}", param="response_format")
                if isinstance(item, BaseException):
                    raise item
                if item.text:
                    st.metrics.generated_tokens += 1
                if not await writer.add(item):
                    break  # the client went away: cancelling the job frees its slot
                if item.finish_reason is not None:
                    return await writer.finish(), writer.completion_tokens
        return await writer.stream.finish(), writer.completion_tokens
    finally:
        runtime.cancel(job)  # nothing to do when it finished


class _Writer:
    """Collects chunks into one JSON answer, or streams them as SSE once the first one is in."""

    def __init__(
        self,
        request: web.Request,
        st: WorkerState,
        runtime: TextGenerator,
        chat: bool,
        gen: GenerationRequest,
        prompt_tokens: int,
    ) -> None:
        self.request, self.st, self.runtime, self.chat, self.gen = request, st, runtime, chat, gen
        self.prompt_tokens = prompt_tokens
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.text: list[str] = []
        self.finish_reason: str | None = None
        self.stream = EventStream(request, "sse", what="generation")
        self.completion_tokens = 0
        self._token_frame: tuple[str, str] | None = None
        self.calling: bool | None = None if gen.tools is not None else False  # known at the first text
        self._sent = 0
        self.logprobs: list[dict[str, Any]] = []  # every token's entry (the JSON answer)
        self._lp_unsent: list[dict[str, Any]] = []  # entries not yet streamed
        self._offset = 0  # legacy completions' text_offset

    async def add(self, chunk: Chunk) -> bool:
        self.text.append(chunk.text)
        if chunk.logprobs:
            self.logprobs += chunk.logprobs
            self._lp_unsent += chunk.logprobs
        self.finish_reason = chunk.finish_reason or self.finish_reason
        if chunk.text:
            self.completion_tokens += 1
        if self.calling is None and "".join(self.text):
            self.calling = "".join(self.text).startswith("{")  # the grammar lets only a call open with "{"
        if not self.gen.stream or self.calling is not False:  # a call is sent whole, once it is complete
            return not _closing(self.request)
        if not self.stream.committed and not await self._start_stream():
            return False
        text = "".join(self.text[-1:]) if self.gen.tools is None else self._unsent()
        if self.gen.sampling.logprobs is not None:
            return not text or await self.stream.send(self._chunk(self._delta(text), None, self._stream_logprobs()))
        return not text or await self.stream.send_bytes(self._token_event(text))

    def _delta(self, text: str) -> Any:
        return {"content": text} if self.chat else text

    def _stream_logprobs(self) -> dict[str, Any]:
        out, self._lp_unsent = self._lp_unsent, []
        return self._logprobs_field(out)

    def _logprobs_field(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """OpenAI's shape: chat ``{"content": [...]}``; legacy completions ``tokens``/``token_logprobs``/..."""
        if self.chat:
            return {"content": entries}
        offsets = []
        for e in entries:
            offsets.append(self._offset)
            self._offset += len(e["token"])
        return {
            "tokens": [e["token"] for e in entries],
            "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
            "text_offset": offsets,
        }

    def _unsent(self) -> str:
        """Text held while it was unknown whether the reply is a call, then each new piece."""
        text = "".join(self.text)
        out, self._sent = text[self._sent :], len(text)
        return out

    def _token_event(self, text: str) -> bytes:
        """One SSE event for a token: only the text is encoded per token, the rest once per request."""
        if self._token_frame is None:
            marker = "\x00"
            frame = json.dumps(self._chunk({"content": marker} if self.chat else marker, None), ensure_ascii=False)
            head, tail = frame.split(json.dumps(marker), 1)
            self._token_frame = ("data: " + head, tail + "\n\n")
        head, tail = self._token_frame
        return (head + json.dumps(text, ensure_ascii=False) + tail).encode()

    async def _start_stream(self) -> bool:
        if self.chat:
            return await self.stream.send(self._chunk({"role": "assistant", "content": ""}, None))
        return await self.stream.commit()

    def _chunk(self, delta: Any, finish: str | None, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.chat:
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": delta, "logprobs": logprobs, "finish_reason": finish}
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.st.name, "choices": [choice]}

    def usage(self) -> dict[str, int]:
        completion = self.runtime.count_tokens("".join(self.text))
        self.completion_tokens = completion
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    async def finish(self) -> web.StreamResponse:
        finish = self.finish_reason or "stop"
        text = "".join(self.text)
        calls = self.gen.tools.as_call(text) if self.gen.tools is not None and self.calling else None
        if calls is not None:
            finish = "tool_calls"
        wants_logprobs = self.gen.sampling.logprobs is not None
        if not self.gen.stream:
            logprobs = self._logprobs_field(self.logprobs) if wants_logprobs else None
            choice: dict[str, Any] = {"index": 0, "logprobs": logprobs, "finish_reason": finish}
            if calls is not None:
                choice["message"] = {"role": "assistant", "content": None, "tool_calls": calls}
            elif self.chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            body = {
                "id": self.id,
                "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created,
                "model": self.st.name,
                "choices": [choice],
                "usage": self.usage(),
            }
            return web.json_response(body)
        if not self.stream.committed:
            await self._start_stream()
        if calls is not None:
            deltas = [{"index": i, **call} for i, call in enumerate(calls)]
            await self.stream.send(self._chunk({"tool_calls": deltas}, None))
        elif self.calling:  # a call cut short (max_tokens): its text, as any other reply
            await self.stream.send_bytes(self._token_event(self._unsent()))
        last = self._stream_logprobs() if wants_logprobs and self._lp_unsent else None  # tokens held back
        await self.stream.send(self._chunk({} if self.chat else "", finish, last))
        if self.gen.include_usage:
            await self.stream.send({**self._chunk({}, None), "choices": [], "usage": self.usage()})
        await self.stream.send("[DONE]")
        return await self.stream.finish()


def _closing(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()
