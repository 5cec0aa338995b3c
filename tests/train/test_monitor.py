"""Stall warnings."""

from polyfuse.train import StallMonitor


def test_warns_once_when_one_modality_stalls_while_another_improves() -> None:
    mon = StallMonitor(window=2, tolerance=0.01)
    warnings = []
    for epoch in range(6):
        warnings += mon.update({"audio": 2.30, "image": 2.0 * 0.8**epoch})
    assert len(warnings) == 1 and "'audio'" in warnings[0] and "stalled" in warnings[0]


def test_no_warning_when_everything_plateaus_together() -> None:
    mon = StallMonitor(window=2, tolerance=0.01)
    assert not any(mon.update({"audio": 1.0, "image": 0.5}) for _ in range(6))


def test_a_converged_loss_is_not_stalled() -> None:
    mon = StallMonitor(window=2, tolerance=0.01)
    history = [2.3, 0.5, 0.05, 0.04, 0.04, 0.04]
    assert not any(mon.update({"audio": a, "image": 2.0 * 0.7**e}) for e, a in enumerate(history))
