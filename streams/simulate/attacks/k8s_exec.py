"""``kubectl exec`` into a model-serving pod: an interactive shell next to the model weights.

The audit log shows ``create`` on ``pods/exec`` by a person (not a controller) with an
interactive shell (``stdin``, ``tty``), ResponseStarted with 101 (the stream is open) and
ResponseComplete when the shell exits minutes later; Falco notices the terminal shell.
Expected alerts: ``access.k8s_exec`` on the pod, and ``access.shell`` from Falco's notice.
"""

from __future__ import annotations

from ramparts.timeutil import NS

from .. import formats as fmt
from ..world import Label, World, uuid_text
from . import Attack

USER, SOURCE_IP = "contractor-7@example.com", "198.51.100.200"


def inject(world: World, start: int, end: int) -> list[Label]:
    r = world.rng("attack:k8s-exec")
    target = world.serving_pods()[0]
    at = start + int(r.uniform(0, max(1, (end - start) / NS * 0.2)) * NS)
    session = min(int(r.uniform(150, 260) * NS), end - at)
    closed = at + session
    uri = fmt.exec_uri(target.namespace, target.pod, target.container, ["/bin/sh"])
    for t, line in fmt.audit_stages(
            audit_id=uuid_text(r), verb="create", uri=uri, user=USER, groups=["contractors", "system:authenticated"],
            src_ip=SOURCE_IP, user_agent="kubectl/v1.31.1 (darwin/arm64) kubernetes/948afe5",
            object_ref={"resource": "pods", "namespace": target.namespace, "name": target.pod, "apiVersion": "v1",
                        "subresource": "exec"},
            received=at, code=101,
            stages=[("RequestReceived", at), ("ResponseStarted", at + int(r.uniform(20, 60) * 1e6)),
                    ("ResponseComplete", closed)]):
        world.out.add("k8s_audit", t, line)

    shell = at + int(r.uniform(0.08, 0.4) * NS)
    cid = f"{r.getrandbits(48):012x}"
    world.out.add("falco", shell, fmt.falco_alert(
        ts=shell, hostname=target.node, rule="Terminal shell in container", priority="Notice",
        output=(f"A shell was spawned in a container with an attached terminal (evt_type=execve user=root "
                f"user_uid=0 user_loginuid=-1 process=sh proc_exepath=/bin/sh parent=runc command=sh terminal=34816 "
                f"exe_flags=EXE_WRITABLE container_id={cid} container_name={target.container} "
                f"k8s_ns={target.namespace} k8s_pod_name={target.pod})"),
        tags=["T1059", "container", "maturity_stable", "mitre_execution", "shell"],
        fields={"container.id": cid, "container.image.repository": target.image.rsplit(":", 1)[0],
                "container.image.tag": target.image.rsplit(":", 1)[1], "container.name": target.container,
                "k8s.ns.name": target.namespace, "k8s.pod.name": target.pod, "proc.cmdline": "sh",
                "proc.name": "sh", "proc.pname": "runc", "user.name": "root"}))
    return [Label("kubectl-exec", "access.k8s_exec", "pod", f"{target.namespace}/{target.pod}", at, closed,
                  f"{USER} opened an interactive shell (kubectl exec) in {target.pod}, serving {target.serves}"),
            Label("kubectl-exec", "access.shell", "pod", f"{target.namespace}/{target.pod}", shell, closed,
                  f"Falco 'Terminal shell in container' in {target.pod}")]


ATTACK = Attack("kubectl-exec", "an interactive kubectl exec into a model-serving pod by a person", inject)
