"""A fixed, varied set of sentences for the embedding benchmarks (short chat lines to long paragraphs)."""

from __future__ import annotations

import random

SUBJECTS = [
    "The edge device",
    "A Raspberry Pi",
    "Our model server",
    "The sensor hub",
    "This Jetson board",
    "The warehouse robot",
    "A weather station",
    "The kiosk",
    "My laptop",
    "The factory camera",
]
VERBS = ["reports", "computes", "streams", "caches", "forwards", "summarises", "classifies", "embeds"]
OBJECTS = [
    "temperature readings every minute",
    "a sentence embedding for each request",
    "logs to the central server",
    "quantized weights from the workstation",
    "alerts when the CPU gets too hot",
    "search queries in English",
    "customer questions about opening hours",
    "images of parcels on the belt",
]
TAILS = [
    "",
    " without any cloud connection",
    " while the battery lasts",
    " and then sleeps until the next event",
    " as long as the network is up, which on this site is rarely the case for more than a few hours a day",
]


def sentences(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(TAILS)}."
        if i % 11 == 0:  # a few long ones, as real traffic has
            s += " " + " ".join(rng.choice(OBJECTS) for _ in range(6)) + "."
        out.append(s)
    return out
