"""OpenAI chat/completions routes on a llama.cpp runtime: JSON or SSE; the engine decodes up to --parallel at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import replace
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
        fmt = getattr(runtime, "tool_format", None)
        gen = parse_generation(body, chat, fmt)
        source: list[dict[str, Any]] | str = (
            prompt_messages(parse_messages(body), gen.tools, fmt) if chat else parse_prompt(body)
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
        listed = list(gen.tools.template_tools) if gen.tools is not None else []  # the template renders them
        prompt: list[int] = (
            runtime.chat_prompt(source, listed or None) if isinstance(source, list) else runtime.tokenize_prompt(source)
        )
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
    """``n`` choices, each its own engine job (slot); one JSON answer or one SSE stream for all of them."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    transport = request.transport

    def gone() -> bool:  # polled by the engine each step: a client that left frees its slots
        return transport is None or transport.is_closing()

    def emitter(index: int) -> Any:
        def emit(item: Chunk | BaseException) -> None:  # from the engine thread
            with contextlib.suppress(RuntimeError):  # the loop has closed (shutdown): nobody is waiting any more
                loop.call_soon_threadsafe(queue.put_nowait, (index, item))

        return emit

    stream = EventStream(request, "sse", what="generation")
    ids = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24], int(time.time())
    writers = [_Writer(request, st, runtime, chat, gen, len(prompt), stream, i, ids) for i in range(gen.n)]
    jobs = [
        runtime.submit(prompt, _choice_sampling(gen, i), emitter(i), gone=gone, cache_prompt=gen.cache_prompt)
        for i in range(gen.n)
    ]
    try:
        async with stream:  # an error before the first chunk keeps its status; after it, an SSE error
            done = 0
            while done < len(writers):
                index, item = await queue.get()
                _raise_if_error(item)
                if item.text:
                    st.metrics.generated_tokens += 1
                if not await writers[index].add(item):
                    break  # the client went away: cancelling the jobs frees their slots
                if item.finish_reason is not None:
                    done += 1
                    if gen.stream:
                        await writers[index].send_finish()
            else:
                resp = await _answer(writers, stream, gen, chat)
                return resp, sum(w.completion_tokens for w in writers)
        return await stream.finish(), sum(w.completion_tokens for w in writers)
    finally:
        for job in jobs:
            runtime.cancel(job)  # nothing to do when it finished


def _raise_if_error(item: Chunk | BaseException, format_param: str = "response_format") -> None:
    """An engine item that is an error, as the route's problem: shutting down is 503, a bad grammar a 400."""
    if isinstance(item, EngineClosed):
        raise NotReady(str(item))
    if isinstance(item, GrammarRejected):
        raise InvalidRequest(f"the output format: {item}", param=format_param)
    if isinstance(item, BaseException):
        raise item


def _choice_sampling(gen: GenerationRequest, index: int) -> Any:
    """Choice ``index``'s sampling: a given seed moves by one per choice, so n choices differ and still repeat."""
    if index == 0 or gen.sampling.seed is None:
        return gen.sampling
    return replace(gen.sampling, seed=gen.sampling.seed + index)


async def _answer(
    writers: list[_Writer], stream: EventStream, gen: GenerationRequest, chat: bool
) -> web.StreamResponse:
    """The JSON answer with every choice, or the stream's end: usage when asked, then [DONE]."""
    first = writers[0]
    usage = {"prompt_tokens": first.prompt_tokens, "completion_tokens": 0, "total_tokens": first.prompt_tokens}
    for w in writers:
        usage["completion_tokens"] += w.count()
    usage["total_tokens"] += usage["completion_tokens"]
    if not gen.stream:
        body = {
            "id": first.id,
            "object": "chat.completion" if chat else "text_completion",
            "created": first.created,
            "model": first.st.name,
            "choices": [w.choice() for w in writers],
            "usage": usage,
        }
        return web.json_response(body)
    if gen.include_usage:
        await stream.send({**first._chunk({}, None), "choices": [], "usage": usage})
    await stream.send("[DONE]")
    return await stream.finish()


class _Writer:
    """One choice: collects its chunks for the JSON answer, or streams them as SSE once the first one is in."""

    def __init__(
        self,
        request: web.Request,
        st: WorkerState,
        runtime: TextGenerator,
        chat: bool,
        gen: GenerationRequest,
        prompt_tokens: int,
        stream: EventStream,
        index: int,
        ids: tuple[str, int],
    ) -> None:
        self.request, self.st, self.runtime, self.chat, self.gen = request, st, runtime, chat, gen
        self.prompt_tokens = prompt_tokens
        self.index = index
        self.id, self.created = ids  # shared by the request's choices
        self.text: list[str] = []
        self.finish_reason: str | None = None
        self.stream = stream
        self.started = False  # this choice's first chunk (the role, on chat) is out
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
        opening = "".join(self.text).lstrip()  # Mistral's call may open with a space after its control token
        if self.calling is None and opening:
            self.calling = self.gen.tools is not None and self.gen.tools.opens_call(opening)
        if not self.gen.stream or self.calling is not False:  # a call is sent whole, once it is complete
            return not _closing(self.request)
        if not self.started and not await self._start_stream():
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
        self.started = True
        if self.chat:
            return await self.stream.send(self._chunk({"role": "assistant", "content": ""}, None))
        return await self.stream.commit()

    def _chunk(self, delta: Any, finish: str | None, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.chat:
            choice = {"index": self.index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": self.index, "text": delta, "logprobs": logprobs, "finish_reason": finish}
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.st.name, "choices": [choice]}

    def count(self) -> int:
        """This choice's completion tokens (the text re-tokenized, as usage reports them)."""
        self.completion_tokens = self.runtime.count_tokens("".join(self.text))
        return self.completion_tokens

    def _calls(self) -> tuple[list[dict[str, Any]] | None, str]:
        calls = self.gen.tools.as_call("".join(self.text)) if self.gen.tools is not None and self.calling else None
        return calls, "tool_calls" if calls is not None else self.finish_reason or "stop"

    def choice(self) -> dict[str, Any]:
        """This choice in the JSON answer."""
        calls, finish = self._calls()
        logprobs = self._logprobs_field(self.logprobs) if self.gen.sampling.logprobs is not None else None
        choice: dict[str, Any] = {"index": self.index, "logprobs": logprobs, "finish_reason": finish}
        text = "".join(self.text)
        if calls is not None:
            choice["message"] = {"role": "assistant", "content": None, "tool_calls": calls}
        elif self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return choice

    async def send_finish(self) -> None:
        """Streaming: this choice's last chunks (a call, text held back, the finish reason)."""
        calls, finish = self._calls()
        if not self.started:
            await self._start_stream()
        if calls is not None:
            deltas = [{"index": i, **call} for i, call in enumerate(calls)]
            await self.stream.send(self._chunk({"tool_calls": deltas}, None))
        elif self.calling:  # a call cut short (max_tokens): its text, as any other reply
            await self.stream.send_bytes(self._token_event(self._unsent()))
        wants = self.gen.sampling.logprobs is not None and self._lp_unsent
        last = self._stream_logprobs() if wants else None  # tokens held back
        await self.stream.send(self._chunk({} if self.chat else "", finish, last))


def _closing(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()
