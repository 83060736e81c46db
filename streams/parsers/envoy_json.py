"""PLACEHOLDER: being written; replace this whole module."""

from .base import Parser


class EnvoyJsonParser(Parser):
    name = "envoy_json"
    kind = "request"

    @classmethod
    def sniff(cls, head, lines):
        return False

    def parse_record(self, raw):
        raise NotImplementedError("envoy_json parser not written yet")
