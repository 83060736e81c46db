from ramparts.redact import HASH_PREFIX, Hasher


def test_principal_hash_is_stable_keyed_and_strips_the_scheme():
    a, b = Hasher(b"key-a"), Hasher(b"key-a")
    assert a.principal("Bearer sk-proj-0123456789abcdef") == b.principal("sk-proj-0123456789abcdef")
    assert a.principal("sk-proj-0123456789abcdef") != Hasher(b"key-b").principal("sk-proj-0123456789abcdef")
    pid = a.principal("sk-proj-0123456789abcdef")
    assert pid.startswith(HASH_PREFIX + "sk-") and "0123456789abcdef" not in pid
    # An id that is already hashed is not hashed again (re-parsing our own output).
    assert a.principal(pid) == pid


def test_scrub_bytes_removes_credentials_in_free_text():
    h = Hasher(b"k")
    raw = (b'{"headers": {"authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.abc.def", "x-api-key": "AKIAEXAMPLE123"},'
           b' "note": "used sk-live-ABCDEFGHIJKLMNOPQRST", "token=abcdef123456"}')
    out = h.scrub_bytes(raw)
    for secret in (b"eyJhbGciOiJIUzI1NiJ9", b"AKIAEXAMPLE123", b"sk-live-ABCDEFGHIJKLMNOPQRST", b"abcdef123456"):
        assert secret not in out
    assert out.count(HASH_PREFIX.encode()) == 4
    assert h.scrub_bytes(b"nothing secret here") == b"nothing secret here"


def test_scrub_path_hides_secret_query_parameters_only():
    h = Hasher(b"k")
    assert h.scrub_path("/v1/chat/completions") == "/v1/chat/completions"
    out = h.scrub_path("/v1/models?key=AIzaSyD-secret&alt=json")
    assert "AIzaSyD-secret" not in out and out.endswith("&alt=json") and out.startswith("/v1/models?key=key:")


def test_development_key_is_flagged(monkeypatch):
    monkeypatch.delenv("RAMPARTS_HASH_KEY", raising=False)
    assert Hasher().is_development_key
    monkeypatch.setenv("RAMPARTS_HASH_KEY", "prod-key")
    assert not Hasher().is_development_key
    assert Hasher().principal("abc123") == Hasher(b"prod-key").principal("abc123")
