"""The two tiers of the suite: every lmms / slurm / distributed / resume test is also `integration` (conftest.py), so
`make test-fast` (-m "not integration") leaves all of them, and only them, out; `make test` (CI) runs every test."""

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
    recipe = lambda target: make.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]  # noqa: E731
    assert "$(PY) -m pytest -q --durations" in recipe("test") and " -m " not in recipe("test").split("pytest")[1]
    assert "REQUIRE_LMMS=1" in recipe("test")  # CI fails, not skips, when an lmms-eval test lacks what it needs
    assert '$(PY) -m pytest -q -m "not integration"' in recipe("test-fast")
    assert (ROOT / ".ci/run").read_text().strip().splitlines()[-1] == "make test"
