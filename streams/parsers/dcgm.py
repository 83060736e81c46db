"""PLACEHOLDER: being written; replace this whole module."""

from .base import Parser


class DcgmParser(Parser):
    name = "dcgm"
    kind = "gpu"

    @classmethod
    def sniff(cls, head, lines):
        return False

    def parse_record(self, raw):
        raise NotImplementedError("dcgm parser not written yet")
