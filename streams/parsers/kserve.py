"""PLACEHOLDER: being written; replace this whole module."""

from .base import Parser


class KServeParser(Parser):
    name = "kserve"
    kind = "prediction"

    @classmethod
    def sniff(cls, head, lines):
        return False

    def parse_record(self, raw):
        raise NotImplementedError("kserve parser not written yet")
