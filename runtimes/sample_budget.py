"""How much of the engine thread's time one slot's sampling may take while other slots are generating.

All slots are decoded in one step and then sampled one after the other on the same thread, so a slot whose
sampling is slow (a JSON schema's grammar masking the whole vocabulary: tens of milliseconds for one token of a
large schema) delays every other slot's next token by as much. Each slot therefore has a credit in seconds: every
step it earns ``share`` of the step's wall time (capped at ``burst_s``), and every sample it takes costs what it
took. While others generate, a slot in debt sits out the next steps (its token waits, undecoded) until it has
earned its time back: a neighbour's grammar costs the others at most about ``share`` of their speed, and the
slow request still advances at the rate its share allows. A slot alone, or every slot in debt, is never held back.
"""

from __future__ import annotations

SHARE = 0.15  # of a step's wall time, what each slot's sampling may take while others generate
BURST_S = 0.02  # credit a slot may save up: short spikes pass, a run of slow samples does not


class SampleBudget:
    def __init__(self, share: float = SHARE, burst_s: float = BURST_S) -> None:
        self.share, self.burst_s = share, burst_s
        self._credit: dict[int, float] = {}

    def start(self, slot: int) -> None:
        """A new job on ``slot``: it starts with a full burst."""
        self._credit[slot] = self.burst_s

    def in_debt(self, slot: int) -> bool:
        return self._credit.get(slot, self.burst_s) < 0

    def credit(self, slot: int) -> float:
        return self._credit.get(slot, self.burst_s)

    def spend(self, slot: int, seconds: float, *, shared: bool) -> None:
        """``slot`` sampled for ``seconds``. Alone (``shared`` false) it delayed nobody: nothing is owed."""
        if shared:
            self._credit[slot] = self.credit(slot) - seconds

    def earn(self, slots: list[int], step_seconds: float) -> None:
        """One step of ``step_seconds`` (decode and every sample) went by while ``slots`` had jobs."""
        for slot in slots:
            self._credit[slot] = min(self.burst_s, self.credit(slot) + self.share * step_seconds)

    def plan(self, generating: list[int], prefilling: bool) -> tuple[list[int], bool]:
        """The generating slots that take part in the next step, and whether that step is shared (more than one
        slot's work in it). A slot in debt sits out only when someone else's work goes ahead without it."""
        shared = len(generating) + (1 if prefilling else 0) > 1
        if not shared:
            return generating, False
        ready = [s for s in generating if not self.in_debt(s)]
        if not ready and not prefilling:  # all in debt: nobody to make way for
            return generating, True
        return ready, len(ready) + (1 if prefilling else 0) > 1
