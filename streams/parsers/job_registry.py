"""PLACEHOLDER: being written; replace this whole module."""

from .base import Parser


class JobRegistryParser(Parser):
    name = "job_registry"
    kind = "workload"

    @classmethod
    def sniff(cls, head, lines):
        return False

    def parse_record(self, raw):
        raise NotImplementedError("job_registry parser not written yet")
