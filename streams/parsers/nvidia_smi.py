"""PLACEHOLDER: being written; replace this whole module."""

from .base import Parser


class NvidiaSmiParser(Parser):
    name = "nvidia_smi"
    kind = "gpu"

    @classmethod
    def sniff(cls, head, lines):
        return False

    def parse_record(self, raw):
        raise NotImplementedError("nvidia_smi parser not written yet")
