"""PLACEHOLDER: being written; replace this whole module."""

from .base import Parser


class K8sAuditParser(Parser):
    name = "k8s_audit"
    kind = "runtime"

    @classmethod
    def sniff(cls, head, lines):
        return False

    def parse_record(self, raw):
        raise NotImplementedError("k8s_audit parser not written yet")
