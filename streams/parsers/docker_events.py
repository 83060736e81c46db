"""PLACEHOLDER: being written; replace this whole module."""

from .base import Parser


class DockerEventsParser(Parser):
    name = "docker_events"
    kind = "runtime"

    @classmethod
    def sniff(cls, head, lines):
        return False

    def parse_record(self, raw):
        raise NotImplementedError("docker_events parser not written yet")
