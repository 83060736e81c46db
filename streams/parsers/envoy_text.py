"""PLACEHOLDER: being written; replace this whole module."""

from .base import Parser


class EnvoyTextParser(Parser):
    name = "envoy_text"
    kind = "request"

    @classmethod
    def sniff(cls, head, lines):
        return False

    def parse_record(self, raw):
        raise NotImplementedError("envoy_text parser not written yet")
