"""The restart arithmetic of ``gochat-py up``: backoff, the death limit and when a process is healthy again."""

from __future__ import annotations

import pytest

from gochat_py.config import LauncherSettings, load_settings
from gochat_py.supervisor import GiveUp, Restart, RestartPolicy, describe_exit

DEFAULTS = LauncherSettings()


def test_the_delay_doubles_up_to_the_maximum() -> None:
    policy = RestartPolicy(LauncherSettings(restart_limit=100, restart_window=1000.0))
    now, delays = 0.0, []
    for _ in range(7):
        decision = policy.died(now, started_at=now - 1)  # each run lasted one second
        assert isinstance(decision, Restart)
        delays.append(decision.delay)
        now += decision.delay + 1
    assert delays == [0.5, 1, 2, 4, 8, 10, 10]
    assert policy.restarts == 7


def test_the_fifth_death_within_the_window_gives_up() -> None:
    policy = RestartPolicy(DEFAULTS)
    decisions = [policy.died(now, started_at=now - 1) for now in (10.0, 12.0, 15.0, 20.0)]
    assert [d.attempt for d in decisions if isinstance(d, Restart)] == [1, 2, 3, 4]
    decision = policy.died(30.0, started_at=29.0)
    assert decision == GiveUp("5 deaths within 60 s ([launcher] restart_limit = 5)")


def test_deaths_older_than_the_window_do_not_count() -> None:
    policy = RestartPolicy(LauncherSettings(restart_limit=3, restart_window=60.0))
    assert isinstance(policy.died(0.0, started_at=-1), Restart)
    assert isinstance(policy.died(30.0, started_at=29), Restart)
    assert isinstance(policy.died(61.0, started_at=60), Restart)  # the death at 0 s has left the window
    assert isinstance(policy.died(70.0, started_at=69), GiveUp)  # 30, 61 and 70


def test_a_process_that_ran_for_the_window_starts_again_with_the_short_delay() -> None:
    policy = RestartPolicy(DEFAULTS)
    for now in (1.0, 3.0, 7.0):
        policy.died(now, started_at=now - 1)
    decision = policy.died(100.0, started_at=20.0)  # ran 80 s: healthy
    assert decision == Restart(delay=0.5, attempt=1)
    assert policy.restarts == 4  # the total is not reset


def test_a_limit_of_one_stops_at_the_first_death() -> None:
    assert isinstance(RestartPolicy(LauncherSettings(restart_limit=1)).died(5.0, started_at=0.0), GiveUp)


@pytest.mark.parametrize(
    ("returncode", "text"),
    [(3, "exit code 3"), (0, "exit code 0"), (-9, "killed by SIGKILL"), (-15, "killed by SIGTERM")],
)
def test_describe_exit(returncode: int, text: str) -> None:
    assert describe_exit(returncode) == text


def test_the_settings_come_from_the_files_and_the_environment() -> None:
    for env in ("dev", "prod"):
        assert load_settings(env=env, environ={}).launcher == DEFAULTS  # the files say the defaults
    settings = load_settings(env="dev", environ={"GOCHAT_LAUNCHER__RESTART_LIMIT": "2"})
    assert settings.launcher.restart_limit == 2
