"""benchmarks/sim/why.py (scripts/simulate --why-idle): small swarms whose idle
uplinks have known reasons."""

import pytest

from benchmarks import simulate as cli
from benchmarks.sim.swarm import simulate
from tests.benchmarks.test_simulate import MIB, small


def test_sampling_why_uplinks_idle_does_not_change_the_run():
    plain = simulate(small(nodes=6, super_seed=True))
    why = simulate(small(nodes=6, super_seed=True, why_idle=0.05))
    assert [r["seconds"] for r in why["reads"]] == [r["seconds"] for r in plain["reads"]]
    assert why["origin_tx"] == plain["origin_tx"]
    assert "why_idle" in why and "why_idle" not in plain


def test_a_lone_leecher_idles_because_nobody_wants_what_it_has():
    why = simulate(small(nodes=1, why_idle=0.05))["why_idle"]
    # Its only peer is the origin, which has everything: nobody is interested,
    # and the leecher itself always waits on blocks it asked for.
    assert why["upload"]["all"] == {"nobody interested": 1.0}
    assert why["download"]["all"]["requests out"] > 0.9
    assert why["from"] == 1.0 and why["to"] == pytest.approx(4 * MIB / 1e6)


def test_the_shares_of_each_side_and_quarter_add_up_to_one():
    why = simulate(small(nodes=6, why_idle=0.05))["why_idle"]
    for side in ("upload", "download"):
        assert sum(why[side]["all"].values()) == pytest.approx(1.0)
        assert len(why[side]["quarters"]) == 4
        for q in why[side]["quarters"]:
            assert sum(q.values()) == pytest.approx(1.0)
    # Six nodes trading what the origin sends: busy most of the time.
    assert why["upload"]["all"]["busy"] > 0.5


def test_the_command_prints_why_uplinks_idle(capsys):
    assert cli.main(["--nodes", "4", "--size", "4", "--why-idle", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "why uplinks idle" in out and "busy" in out and "requests out" in out


def test_a_negative_sampling_period_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--why-idle", "-1"])
    assert "--why-idle" in capsys.readouterr().err
