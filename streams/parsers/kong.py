"""PLACEHOLDER: being written; replace this whole module."""

from .base import Parser


class KongParser(Parser):
    name = "kong"
    kind = "request"

    @classmethod
    def sniff(cls, head, lines):
        return False

    def parse_record(self, raw):
        raise NotImplementedError("kong parser not written yet")
