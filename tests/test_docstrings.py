"""The examples in docstrings are run: documentation that prints real output stays true."""

import doctest
import importlib
import pkgutil

import pytest



# The top-level folders install as subpackages of `ramparts` (see pyproject.toml), so each is
# walked from its own path.
PACKAGES = ["ramparts", "ramparts.streams", "ramparts.detectors", "ramparts.sinks", "ramparts.playbooks",
            "ramparts.alerting", "ramparts.bench", "ramparts.dashboards"]


def _modules():
    names = set(PACKAGES)
    for pkg in PACKAGES:
        module = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(module.__path__, pkg + "."):
            names.add(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
