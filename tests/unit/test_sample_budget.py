"""The engine's sampling budget on a fake clock: the engine loop (plan, decode, sample each ready slot, earn),
played with made-up costs, so each figure is exact. A slow neighbour's grammar must cost a plain stream at most
about the budget's share; the slow one must still advance; nobody alone, or all in debt, is held back. The real
engine's figure is measured by bench/llm.py (neighbour_cost, goal <= 1.25)."""

from __future__ import annotations

from collections.abc import Callable

from runtimes.sample_budget import SampleBudget

DECODE_S = 0.012  # one decode step of SmolLM2-135M on 2 cores, about
PLAIN_S = 0.0002  # a plain sampler chain over the vocabulary


def grammar(cost: float, every: int) -> Callable[[int], float]:
    """A grammar that refuses the free choice every ``every``-th token: masking the vocabulary then costs ``cost``."""
    return lambda n: cost if n % every == 0 else 0.001


def play(samplers: dict[int, Callable[[int], float]], steps: int, budget: SampleBudget) -> dict[int, list[float]]:
    """Each slot's token times, on a clock that only the decode and the samples move."""
    clock = 0.0
    times: dict[int, list[float]] = {slot: [] for slot in samplers}
    for slot in samplers:
        budget.start(slot)
    for _ in range(steps):
        ready, shared = budget.plan(list(samplers), prefilling=False)
        t0 = clock
        clock += DECODE_S
        for slot in ready:
            cost = samplers[slot](len(times[slot]))
            clock += cost
            budget.spend(slot, cost, shared=shared)
            times[slot].append(clock)
        budget.earn(list(samplers), clock - t0)
    return times


def per_token(times: list[float]) -> float:
    return (times[-1] - times[0]) / (len(times) - 1)


def unlimited() -> SampleBudget:
    return SampleBudget(share=float("inf"))  # never in debt when a step is planned: the engine before the budget


def test_a_slow_grammar_neighbour_costs_a_plain_stream_at_most_its_share() -> None:
    beside_plain = per_token(play({0: lambda n: PLAIN_S, 1: lambda n: PLAIN_S}, 400, SampleBudget())[0])
    heavy = {0: lambda n: PLAIN_S, 1: grammar(0.040, every=2)}
    without = per_token(play(heavy, 400, unlimited())[0])
    times = play(heavy, 400, SampleBudget())
    with_budget = per_token(times[0])
    assert without / beside_plain > 2.0  # what the neighbour cost before: every other step 40 ms longer
    assert with_budget / beside_plain < 1.25
    assert len(times[1]) >= 400 * 0.1  # the slow one still advances: about its share of the time
    assert len(times[0]) == 400  # the plain stream never sat out


def test_a_slot_alone_is_never_held_back() -> None:
    times = play({3: grammar(0.040, every=1)}, 50, SampleBudget())
    assert len(times[3]) == 50


def test_when_every_slot_is_in_debt_all_of_them_go_on() -> None:
    times = play({0: grammar(0.040, every=1), 1: grammar(0.040, every=1)}, 100, SampleBudget())
    assert len(times[0]) == len(times[1]) == 100


def test_a_slot_sits_out_only_while_someone_else_goes_ahead() -> None:
    budget = SampleBudget(share=0.1, burst_s=0.01)
    budget.start(0)
    budget.start(1)
    budget.spend(1, 0.05, shared=True)
    assert budget.plan([0, 1], prefilling=False) == ([0], False)  # 1 waits; 0 alone in the step: not shared
    assert budget.plan([1], prefilling=True) == ([], False)  # a prompt's prefill goes ahead without it
    assert budget.plan([1], prefilling=False) == ([1], False)  # alone: it goes on
    budget.spend(0, 0.05, shared=False)  # alone, a sample delays nobody: no debt
    assert not budget.in_debt(0)
    budget.earn([0, 1], 0.5)  # 0.05 earned back
    assert budget.plan([0, 1], prefilling=False) == ([0, 1], True)
    budget.start(1)
    assert budget.credit(1) == 0.01  # a new job starts with a full burst
