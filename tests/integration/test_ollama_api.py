"""The Ollama API on Tursi workers, spoken by the official `ollama` Python client (chat, generate, embed, list, ps,
show, version), with Ollama's streaming, formats, tools and options."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProc, make_env, seed_artifacts, stop_everything_in
from tests.integration.test_lifecycle import free_port, post

HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory, minilm_artifacts: Path) -> Iterator[dict[str, str]]:
    """A SmolLM2 worker and a MiniLM worker, each on its own port (as an Ollama host each). MiniLM comes from the
    session's conversion (the Ollama API is the point here, not converting it)."""
    env = make_env(tmp_path_factory.mktemp("ollama") / "home")
    seed_artifacts(env, minilm_artifacts)
    daemon = DaemonProc(env).start()
    try:
        ports = {"smollm2": free_port(), "minilm": free_port()}
        env.cli("up", "smollm2", "--port", str(ports["smollm2"]), "--threads", "2", check=True)
        env.cli("up", "minilm", "--port", str(ports["minilm"]), check=True, timeout=900)
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        daemon.terminate()
        stop_everything_in(env.home)


def client(host: str) -> Any:
    import ollama

    return ollama.Client(host=host, timeout=300)


def test_chat_whole_and_streamed(hosts: dict[str, str]) -> None:
    c = client(hosts["smollm2"])
    whole = c.chat(model="smollm2", messages=HELLO, stream=False, options={"temperature": 0, "num_predict": 24})
    assert whole.message.role == "assistant"
    assert whole.message.content.strip()
    assert whole.done
    assert whole.done_reason in ("stop", "length")
    assert whole.eval_count > 0
    assert whole.prompt_eval_count > 0
    parts = list(
        c.chat(model="smollm2:latest", messages=HELLO, options={"temperature": 0, "num_predict": 24}, stream=True)
    )
    assert parts[-1].done
    assert all(not p.done for p in parts[:-1])
    assert "".join(p.message.content for p in parts) == whole.message.content  # greedy: the same text
    print(f"\nollama chat: {whole.message.content!r} ({whole.eval_count} tokens, {len(parts)} stream parts)")


def test_generate_with_options_and_a_seed(hosts: dict[str, str]) -> None:
    c = client(hosts["smollm2"])
    opts = {"temperature": 1.0, "seed": 7, "num_predict": 12, "top_k": 20, "repeat_penalty": 1.2, "stop": ["\n\n"]}
    # a first request leaves the prompt in a slot's cache; the next ones all read it from there, decoding the
    # same one-token batch, so their logits (and the seeded samples) are the same bit for bit
    c.generate(model="smollm2", prompt="Once upon a time", options=opts, stream=False)
    a = c.generate(model="smollm2", prompt="Once upon a time", options=opts, stream=False)
    b = c.generate(model="smollm2", prompt="Once upon a time", options=opts, stream=False)
    assert a.response == b.response  # seeded
    assert a.response
    assert a.eval_count <= 12
    parts = c.generate(model="smollm2", prompt="Once upon a time", options=opts, stream=True)
    streamed = "".join(p.response for p in parts)
    assert streamed == a.response


def test_format_schema_is_enforced(hosts: dict[str, str]) -> None:
    import jsonschema

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    c = client(hosts["smollm2"])
    for seed in range(5):
        r = c.chat(
            model="smollm2",
            messages=[{"role": "user", "content": "Invent a person."}],
            format=schema,
            stream=False,
            options={"temperature": 1.0, "seed": seed, "num_predict": 100},
        )
        jsonschema.validate(json.loads(r.message.content), schema)
    r = c.generate(
        model="smollm2",
        prompt="A JSON object about a dog:",
        format="json",
        stream=False,
        options={"seed": 1, "num_predict": 120},
    )
    assert r.done_reason == "length" or isinstance(json.loads(r.response), dict)


def test_tools_through_the_ollama_client(hosts: dict[str, str]) -> None:
    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
          a: the first integer
          b: the second integer
        """
        return a + b

    c = client(hosts["smollm2"])
    messages: list[Any] = [{"role": "user", "content": "What is 2 plus 3? Use the add tool."}]
    r = c.chat(
        model="smollm2", messages=messages, tools=[add], stream=False, options={"temperature": 0, "num_predict": 60}
    )
    calls = r.message.tool_calls or []
    if calls:  # auto: the model may answer in text; when it calls, the call is valid
        assert calls[0].function.name == "add"
        args = dict(calls[0].function.arguments)
        assert set(args) == {"a", "b"}
        messages += [r.message, {"role": "tool", "content": str(add(**args)), "tool_name": "add"}]
        after = c.chat(model="smollm2", messages=messages, stream=False, options={"temperature": 0, "num_predict": 30})
        assert after.message.content.strip()
    else:
        assert r.message.content.strip()
    # Ollama has no tool_choice and SmolLM2-135M answers in text when free to: the call-shaped history below is
    # what a client sends after running a call; the reply must build on it
    history = [
        {"role": "user", "content": "What is 2 plus 3?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "add", "arguments": {"a": 2, "b": 3}}}],
        },
        {"role": "tool", "content": "5", "tool_name": "add"},
    ]
    follow = c.chat(model="smollm2", messages=history, tools=[add], stream=False, options={"temperature": 0})
    assert follow.message.content.strip() or follow.message.tool_calls
    shown = [(t.function.name, dict(t.function.arguments)) for t in calls]
    print(f"\nollama tools: calls={shown} text={r.message.content!r}")


def test_embed_and_the_older_embeddings_route(hosts: dict[str, str]) -> None:
    c = client(hosts["minilm"])
    r = c.embed(model="minilm", input=["a cat sat on the mat", "a feline rested on the rug", "stock markets fell"])
    vecs = r.embeddings
    assert len(vecs) == 3
    assert len(vecs[0]) == 384
    sim = [sum(x * y for x, y in zip(vecs[0], v, strict=True)) for v in vecs]
    assert sim[1] > sim[2]  # the paraphrase is closer than the unrelated sentence
    old = c.embeddings(model="minilm", prompt="a cat sat on the mat")
    assert old.embedding == pytest.approx(list(vecs[0]), abs=2e-2)


def test_list_ps_show_version(hosts: dict[str, str]) -> None:
    c = client(hosts["smollm2"])
    names = [m.model for m in c.list().models]
    assert names == ["smollm2:latest"]
    assert [m.model for m in c.ps().models] == ["smollm2:latest"]
    shown = c.show("smollm2")
    assert "completion" in shown.capabilities
    assert shown.details.format == "gguf"
    assert "im_start" in (shown.template or "")
    version = json.loads(__import__("urllib.request").request.urlopen(hosts["smollm2"] + "/api/version").read())
    assert version["version"]
    assert client(hosts["minilm"]).show("minilm").capabilities == ["embedding"]


def test_a_request_with_only_a_model_preloads(hosts: dict[str, str]) -> None:
    status, body = post(hosts["smollm2"] + "/api/generate", {"model": "smollm2"})
    assert status == 200
    assert body["done_reason"] == "load"
    status, body = post(hosts["smollm2"] + "/api/chat", {"model": "smollm2", "messages": [], "keep_alive": 0})
    assert status == 200
    assert body["done"] is True


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/api/chat", {"messages": HELLO, "options": {"temperature": 5}}, "options.temperature"),
        ("/api/chat", {"messages": HELLO, "options": {"num_ctx": 10**6}}, "options.num_ctx"),
        ("/api/chat", {"messages": HELLO, "options": {"mirostat": 2}}, "options.mirostat"),
        ("/api/chat", {"messages": HELLO, "options": {"num_predict": -7}}, "options.num_predict"),
        ("/api/chat", {"messages": HELLO, "format": "yaml"}, "format"),
        ("/api/chat", {"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}, "messages[0].images"),
        ("/api/generate", {"prompt": "x", "stream": "yes"}, "stream"),
    ],
)
def test_bad_ollama_requests_are_400s_with_an_error_string(
    hosts: dict[str, str], route: str, body: dict[str, Any], param: str
) -> None:
    import ollama

    status, problem = post(hosts["smollm2"] + route, {"model": "smollm2", **body})
    assert status == 400
    assert problem["param"] == param
    assert problem["error"] == problem["detail"]  # where Ollama's clients read the message
    with pytest.raises(ollama.ResponseError) as e:
        client(hosts["smollm2"]).chat(model="nope", messages=HELLO)
    assert e.value.status_code == 404
    assert "nope" in e.value.error
