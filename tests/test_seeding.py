"""The contract's seed formulas."""

from __future__ import annotations

import random

import numpy as np

from rlrec.seeding import episode_seed, policy_seed, reseed_globals, ss


def test_ss_is_the_contract_formula():
    for keys in [(0, 0), (0, 1), (7, 123456), (3, 9, 1)]:
        assert ss(*keys) == int(np.random.SeedSequence(list(keys)).generate_state(1)[0])
    assert episode_seed(5, 3) == ss(5, 3) and policy_seed(5, 3) == ss(5, 3, 1)
    assert 0 <= ss(2**40, 1) < 2**32


def test_reseed_globals_makes_jobs_independent_of_what_ran_before():
    reseed_globals(4)
    first = (random.random(), np.random.random())
    random.random(), np.random.random()  # an earlier job in the same worker process
    reseed_globals(4)
    assert (random.random(), np.random.random()) == first
    reseed_globals(5)
    assert (random.random(), np.random.random()) != first
