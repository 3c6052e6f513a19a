"""The failed-authentication budget's decisions (producers/failed_auth.py), as tables: no sockets, the clock given."""

from __future__ import annotations

import pytest

from producers.failed_auth import Admission, FailedAuthBudget, Refusal, Verdict

KEY = b"k" * 32
A, B = "203.0.113.7", "198.51.100.1"
FAIL, OK, NONE = Verdict.FAILED, Verdict.AUTHENTICATED, Verdict.UNDECIDED


def attempt(budget: FailedAuthBudget, address: str, verdict: Verdict, now: float, pair: tuple[str, str] = ("g", "guess")) -> str:
    """One request checked and settled: 'checked', or 'refused <whole seconds to wait>' (and '!' when reported)."""
    decision = budget.admit(address, *pair, now)
    if isinstance(decision, Refusal):
        return f"refused {decision.retry_after_s:g}" + ("!" if decision.report else "")
    budget.settle(decision, verdict, now)
    return "checked"


# (steps: (address, verdict, now, pair or None), what each answered); a budget of 3 failures per 10 s.
TABLE = [
    ("three failures are checked, the fourth refused until the window that began at the first ends",
     [(A, FAIL, 0.0), (A, FAIL, 1.0), (A, FAIL, 2.0), (A, FAIL, 4.0), (A, FAIL, 5.0)],
     ["checked", "checked", "checked", "refused 6!", "refused 5"]),
    ("another address has its own budget",
     [(A, FAIL, 0.0), (A, FAIL, 0.0), (A, FAIL, 0.0), (B, FAIL, 0.0), (A, FAIL, 0.0)],
     ["checked", "checked", "checked", "checked", "refused 10!"]),
    ("the window's end makes the budget whole again, and the next refusal is reported again",
     [(A, FAIL, 0.0), (A, FAIL, 0.0), (A, FAIL, 0.0), (A, FAIL, 9.5), (A, FAIL, 10.0), (A, FAIL, 10.0),
      (A, FAIL, 10.0), (A, FAIL, 11.0)],
     ["checked", "checked", "checked", "refused 0.5!", "checked", "checked", "checked", "refused 9!"]),
    ("a window ends for an address behind another one's in the table too",
     [(A, FAIL, 0.0), (A, FAIL, 0.0), (A, FAIL, 0.0), (B, FAIL, 1.0), (A, FAIL, 2.0), (A, FAIL, 10.0)],
     ["checked"] * 4 + ["refused 8!", "checked"]),
    ("successes and undecided checks spend nothing",
     [(A, OK, 0.0), (A, NONE, 0.0), (A, FAIL, 0.0), (A, OK, 0.0), (A, NONE, 0.0), (A, FAIL, 0.0), (A, FAIL, 0.0)],
     ["checked"] * 7),
]


@pytest.mark.parametrize(("steps", "answers"), [pytest.param(s, a, id=name) for name, s, a in TABLE])
def test_the_budget_answers_each_request_as_the_table_says(steps: list[tuple[str, Verdict, float]], answers: list[str]) -> None:
    budget = FailedAuthBudget(3, 10.0, key=KEY)
    assert [attempt(budget, address, verdict, now) for address, verdict, now in steps] == answers


def test_a_pair_that_authenticated_skips_a_spent_budget_until_it_fails_or_is_forgotten() -> None:
    budget = FailedAuthBudget(2, 60.0, known_for_s=100.0, key=KEY)
    good = ("btc-trend", "right")
    assert attempt(budget, A, OK, 0.0, good) == "checked"
    assert [attempt(budget, A, FAIL, 1.0) for _ in range(3)] == ["checked", "checked", "refused 60!"]
    assert attempt(budget, A, OK, 2.0, good) == "checked"  # known good: through, though the address is limited
    assert attempt(budget, A, OK, 2.0, ("btc-trend", "other")) == "refused 59"  # same group, another token
    assert attempt(budget, A, FAIL, 3.0, good) == "checked"  # its token was replaced: it fails and is forgotten
    assert attempt(budget, A, OK, 4.0, good) == "refused 57"
    fresh = FailedAuthBudget(1, 60.0, known_for_s=100.0, key=KEY)
    assert attempt(fresh, A, OK, 0.0, good) == "checked"
    assert attempt(fresh, A, FAIL, 1.0) == "checked"  # spent until 61 s
    assert attempt(fresh, A, OK, 50.0, good) == "checked"  # known: through, and known again from 50 s on
    assert attempt(fresh, A, FAIL, 140.0) == "checked"  # spent until 200 s
    assert attempt(fresh, A, OK, 149.0, good) == "checked"
    assert attempt(fresh, A, OK, 150.0, ("g", "guess")) == "refused 50!"
    assert attempt(fresh, B, NONE, 250.0, good) == "checked"  # no verdict: not known again
    assert attempt(fresh, B, FAIL, 251.0) == "checked"
    assert attempt(fresh, B, OK, 252.0, good) == "refused 59!"  # 103 s after its last success: forgotten


def test_checks_in_flight_hold_their_place_in_the_budget() -> None:
    budget = FailedAuthBudget(2, 60.0, key=KEY)
    first, second = budget.admit(A, "g", "x", 0.0), budget.admit(A, "g", "y", 0.0)
    assert isinstance(first, Admission) and isinstance(second, Admission)
    assert budget.admit(A, "g", "z", 0.0) == Refusal(1.0, report=True)  # two guesses being checked: no third
    budget.settle(first, Verdict.UNDECIDED, 0.1)
    assert attempt(budget, A, FAIL, 0.2) == "checked"
    budget.settle(second, Verdict.FAILED, 0.3)
    assert attempt(budget, A, FAIL, 0.4) == "refused 59.8"
    assert (budget.failures, budget.limited) == (2, 2)


def test_the_tables_are_bounded_the_least_recently_seen_dropped_first() -> None:
    budget = FailedAuthBudget(1, 60.0, max_addresses=3, max_known=2, key=KEY)
    for n in range(4):
        attempt(budget, f"10.0.0.{n}", FAIL, float(n))
    assert (budget.tracked, budget.evicted) == (3, 1)
    assert attempt(budget, "10.0.0.0", FAIL, 5.0) == "checked"  # dropped for room: its budget whole again
    assert attempt(budget, "10.0.0.3", FAIL, 5.0) == "refused 58!"
    for n in range(3):
        attempt(budget, B, OK, 6.0, ("g", f"token-{n}"))
    assert budget.known == 2
    assert attempt(budget, "10.0.0.3", OK, 7.0, ("g", "token-0")) == "refused 56"  # the oldest pair forgotten
    assert attempt(budget, "10.0.0.3", OK, 7.0, ("g", "token-2")) == "checked"


def test_addresses_whose_window_ended_leave_the_table() -> None:
    budget = FailedAuthBudget(5, 10.0, key=KEY)
    attempt(budget, A, FAIL, 0.0)
    attempt(budget, B, OK, 1.0)  # a success from a new address is not kept
    assert budget.tracked == 1
    attempt(budget, B, OK, 10.0)
    assert budget.tracked == 0


def test_pairs_are_kept_as_keyed_hashes_that_differ_per_key_and_never_collide_across_the_split() -> None:
    budget, other = FailedAuthBudget(key=KEY), FailedAuthBudget(key=b"o" * 32)
    digest = budget.pair_hash("btc-trend", "secret-token")
    assert len(digest) == 16 and b"secret" not in digest
    assert digest != other.pair_hash("btc-trend", "secret-token")
    assert budget.pair_hash("ab", "c") != budget.pair_hash("a", "bc")
    assert FailedAuthBudget().pair_hash("g", "t") != FailedAuthBudget().pair_hash("g", "t")  # a random key each


def test_a_limit_of_zero_checks_everything() -> None:
    budget = FailedAuthBudget(0, 60.0, key=KEY)
    assert [attempt(budget, A, FAIL, 0.0) for _ in range(50)] == ["checked"] * 50
    assert (budget.tracked, budget.failures) == (0, 0)
