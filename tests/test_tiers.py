"""The two tiers of the suite: every lmms / slurm / distributed / resume test is also `integration` (conftest.py),
so `make test` (-m "not integration") leaves all of them, and only them, to `make test-all`."""

from pathlib import Path

from helpers import INTEGRATION

ROOT = Path(__file__).resolve().parents[1]


def test_every_process_level_test_is_in_the_integration_tier(request):
    items = request.session.items  # what this session runs, after conftest's hook (and after -m deselection)
    assert items, "no collected items"
    unmarked = [
        i.nodeid
        for i in items
        if any(i.get_closest_marker(m) for m in INTEGRATION) and not i.get_closest_marker("integration")
    ]
    assert unmarked == []
    make = (ROOT / "Makefile").read_text()
    assert (
        '$(PY) -m pytest -q -m "not integration"' in make.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    )  # make test's recipe
    assert (ROOT / ".ci/run").read_text().strip().splitlines()[-1] == "make test"
