"""PLACEHOLDER: being written; replace this whole module."""

from .base import Parser


class FalcoParser(Parser):
    name = "falco"
    kind = "runtime"

    @classmethod
    def sniff(cls, head, lines):
        return False

    def parse_record(self, raw):
        raise NotImplementedError("falco parser not written yet")
