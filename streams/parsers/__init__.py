"""Every input format, registered in one place.

The order of ``PARSER_CLASSES`` is the order in which auto-detection asks each parser
whether a file looks like its format: more specific formats come first.
"""

from __future__ import annotations

from .base import DeadLetter, Parser, ParseStats

PARSER_CLASSES: list[type[Parser]] = []


def _register() -> None:
    # Imported here, not at module top, so that a parser module can import `base`
    # without a cycle through this registry.
    from . import (  # noqa: F401  (each module is a format)
        k8s_audit, k8s_pods, falco, docker_events, kserve, native, kong, litellm,
        envoy_json, job_registry, dcgm, nvidia_smi, envoy_text, nginx_combined,
    )

    order = [
        k8s_audit.K8sAuditParser, k8s_pods.K8sPodsParser, falco.FalcoParser,
        docker_events.DockerEventsParser, kserve.KServeParser, native.NativePredictionParser,
        kong.KongParser, litellm.LiteLLMParser, envoy_json.EnvoyJsonParser,
        job_registry.JobRegistryParser, dcgm.DcgmParser, nvidia_smi.NvidiaSmiParser,
        envoy_text.EnvoyTextParser, nginx_combined.NginxCombinedParser,
    ]
    PARSER_CLASSES.extend(order)


_register()
PARSERS: dict[str, type[Parser]] = {cls.name: cls for cls in PARSER_CLASSES}
assert len(PARSERS) == len(PARSER_CLASSES), "two parsers share a name"


def get_parser_class(name: str) -> type[Parser]:
    try:
        return PARSERS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, PARSERS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"unknown format '{name}'{hint} (known: {', '.join(PARSERS)})") from None


__all__ = ["DeadLetter", "Parser", "ParseStats", "PARSERS", "PARSER_CLASSES", "get_parser_class"]
