"""The test harness gives every test process its own DDS domain: parallel workers of one run
(pytest-xdist) and runs of different people on one machine must never hear each other's nodes.
"""

import pytest
import ros_helpers


def _domain(monkeypatch: pytest.MonkeyPatch, worker: str | None, base: str | None) -> int:
    for name, value in (("PYTEST_XDIST_WORKER", worker), ("ITERPRIME_TEST_DOMAIN", base)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "one-run")
    return ros_helpers.session_domain_id()


@pytest.mark.parametrize("base", ["1", "97", "131", "232", None])
def test_each_worker_of_a_run_gets_its_own_valid_domain(monkeypatch, base):
    domains = [_domain(monkeypatch, f"gw{k}", base) for k in range(8)]
    assert len(set(domains)) == len(domains), domains
    assert all(1 <= d <= ros_helpers.MAX_DOMAIN_ID for d in domains), domains
    if base is not None:
        assert domains[0] == int(base)


def test_a_run_without_workers_uses_the_given_domain(monkeypatch):
    assert _domain(monkeypatch, None, "97") == 97


def test_a_domain_outside_the_fast_dds_range_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="ITERPRIME_TEST_DOMAIN"):
        _domain(monkeypatch, "gw1", "300")


def test_this_session_set_its_domain_for_every_child_process():
    import os

    assert os.environ["ROS_DOMAIN_ID"] == ros_helpers.DOMAIN_ID
