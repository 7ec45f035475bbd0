"""Classification and fill-mask deployments answer like the transformers model they came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import DaemonProc, Env
from tests.integration.test_lifecycle import post

TEXTS = ["I loved this film, it was wonderful.", "The service was slow and the food cold.", "It is a chair."]


def test_classification_matches_transformers(env: Env, daemon: DaemonProc, tiny_classifier: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    proc = env.cli("up", str(tiny_classifier), "--name", "clf", check=True)
    endpoint = proc.stdout.split(": ", 1)[1].strip()
    status, body = post(endpoint + "/classify", {"input": TEXTS})
    assert status == 200
    tok = AutoTokenizer.from_pretrained(tiny_classifier)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    with torch.no_grad():
        ref = torch.softmax(model(**tok(TEXTS, padding=True, return_tensors="pt")).logits, -1).numpy()
    for i, item in enumerate(body["data"]):
        scores = {d["label"]: d["score"] for d in item["labels"]}
        assert set(scores) == {"negative", "neutral", "positive"}
        got = np.array([scores["negative"], scores["neutral"], scores["positive"]])
        np.testing.assert_allclose(got, ref[i], atol=0.02)
        assert item["labels"][0]["score"] == max(scores.values())  # sorted best first
    status, body = post(endpoint + "/classify", {"input": "one", "top_k": 1})
    assert len(body["data"][0]["labels"]) == 1
    status, problem = post(endpoint + "/fill-mask", {"input": "a [MASK]"})
    assert (status, problem["code"]) == (404, "unsupported_task")


def test_fill_mask_matches_transformers(env: Env, daemon: DaemonProc, tiny_fill_mask: Path) -> None:
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    proc = env.cli("up", str(tiny_fill_mask), "--name", "fm", check=True)
    endpoint = proc.stdout.split(": ", 1)[1].strip()
    text = "The capital of France is [MASK]."
    status, body = post(endpoint + "/fill-mask", {"input": text, "top_k": 3})
    assert status == 200
    preds = body["data"][0]["predictions"]
    assert len(preds) == 3
    tok = AutoTokenizer.from_pretrained(tiny_fill_mask)
    model = AutoModelForMaskedLM.from_pretrained(tiny_fill_mask).eval()
    enc = tok(text, return_tensors="pt")
    pos = int((enc["input_ids"][0] == tok.mask_token_id).nonzero()[0])
    with torch.no_grad():
        probs = torch.softmax(model(**enc).logits[0, pos], -1)
    assert preds[0]["token_id"] == int(probs.argmax())
    assert abs(preds[0]["score"] - float(probs.max())) < 0.01
    assert preds[0]["sequence"] == text.replace("[MASK]", preds[0]["token"])
    for absent in ({"input": text}, {"input": text, "top_k": None}):  # null is the default, not the whole vocabulary
        status, body = post(endpoint + "/fill-mask", absent)
        assert (status, len(body["data"][0]["predictions"])) == (200, 5)
    status, problem = post(endpoint + "/fill-mask", {"input": "no mask here"})
    assert (status, problem["code"], problem["param"]) == (400, "invalid_request", "input")
