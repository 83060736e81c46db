"""PLACEHOLDER: being written; replace this whole module."""

from .base import Parser


class K8sPodsParser(Parser):
    name = "k8s_pods"
    kind = "workload"

    @classmethod
    def sniff(cls, head, lines):
        return False

    def parse_record(self, raw):
        raise NotImplementedError("k8s_pods parser not written yet")
