"""Crash safety (a modest campaign; run `python -m tests.crashkit --trials 200` by hand for a large one)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.crashkit import STAGES, Campaign
from tests.conftest import fake_on_copy

TRIALS_PER_STAGE = int(os.environ.get("BHDS_CRASH_TRIALS", "2"))


@pytest.fixture(scope="module")
def campaign(default_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("crash")
    fake, env = fake_on_copy(default_archive, work)
    yield Campaign(work, env)
    fake.stop()


@pytest.mark.parametrize("stage", STAGES, ids=[s.name for s in STAGES])
def test_killed_and_rerun_equals_clean_run(campaign: Campaign, stage) -> None:
    rng = random.Random(f"{stage.name}-7")
    problems = []
    for index in range(TRIALS_PER_STAGE):
        problems += campaign.trial(stage, rng, index)
    assert problems == []
