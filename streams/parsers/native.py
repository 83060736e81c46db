"""PLACEHOLDER: being written; replace this whole module."""

from .base import Parser


class NativePredictionParser(Parser):
    name = "native"
    kind = "prediction"

    @classmethod
    def sniff(cls, head, lines):
        return False

    def parse_record(self, raw):
        raise NotImplementedError("native parser not written yet")
