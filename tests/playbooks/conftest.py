import pytest

from .helpers import Api, Harness


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    yield h
    h.close()  # chdb opens one directory per process: close before the next test opens its own


@pytest.fixture
def api():
    servers = []

    def make(route=None):
        a = Api(route)
        servers.append(a)
        return a
    yield make
    for s in servers:
        s.stop()
