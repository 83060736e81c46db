"""PLACEHOLDER: being written; replace this whole module."""

from .base import Parser


class LiteLLMParser(Parser):
    name = "litellm"
    kind = "request"

    @classmethod
    def sniff(cls, head, lines):
        return False

    def parse_record(self, raw):
        raise NotImplementedError("litellm parser not written yet")
