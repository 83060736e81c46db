from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "data" / "samples"


@pytest.fixture(scope="session")
def samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.fail(f"the upstream samples are expected at {SAMPLES} (../shared beside the repository)")
    return SAMPLES


@pytest.fixture(scope="module")
def broker():
    """A Tansu broker on a free loopback port, one per test module that asks for it."""
    from ramparts.streams.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        yield b
