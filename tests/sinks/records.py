"""One record of every kind the store takes, with every field and some extra ones."""

REQUEST = {"kind": "request", "ts": 1772442000123456789, "source": "envoy_json", "id": "gw.log:1",
           "principal": "key:sk-abc", "src_ip": "10.0.0.7", "model": "llama-3-8b", "path": "/v1/chat/completions",
           "status": 200, "latency_ms": 12.5, "tokens_in": 120, "tokens_out": 40,
           "method": "POST", "user_agent": "curl/8.5.0", "bytes_out": 14828, "upstream": {"host": "10.1.0.7", "ms": 3.5}}
PREDICTION = {"kind": "prediction", "ts": 1772442000200000000, "source": "native", "id": "pred.jsonl:1",
              "principal": "key-36", "src_ip": "10.32.130.31", "model": "fraud-xgb", "model_version": "3",
              "input": [-1.0922, 0.0313, {"k": "v"}], "output": [0.7623], "request_id": None}
RUNTIME = {"kind": "runtime", "ts": 1772442000300000000, "source": "falco", "id": "falco.jsonl:1",
           "rule": "Terminal shell in container", "verb": None, "priority": "notice", "namespace": "inference",
           "pod": "vllm-14", "container": "vllm", "image": "vllm/vllm-openai:v0.6.3", "process": "bash",
           "user": "root", "src_ip": None, "node": "gpu-node-1", "tags": ["container", "shell"]}
GPU = {"kind": "gpu", "ts": 1772442000400000000, "source": "dcgm", "id": "dcgm.prom:1", "node": "gpu-node-1",
       "gpu_uuid": "GPU-1234", "util_pct": 99.0, "mem_used_mib": 40000, "power_w": 301.5,
       "processes": [{"pid": 4242, "name": "xmrig", "mem_mib": 1024}], "namespace": None, "pod": None,
       "metrics": {"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": 2147483648}}
WORKLOAD = {"kind": "workload", "ts": 1772442000000000000, "source": "k8s_pods", "id": "pods.json:1#0",
            "node": "gpu-node-1", "gpu_uuid": "GPU-1234", "namespace": "inference", "pod": "vllm-14",
            "start": 1772442000000000000, "end": None, "gpus": 1}
EVENTS = [REQUEST, PREDICTION, RUNTIME, GPU, WORKLOAD]

ALERT = {"id": "extraction.prada:key:sk-abc:llama-3-8b", "ts": 1772442060000000000, "detector": "extraction.prada",
         "severity": "high", "entity": {"type": "principal", "id": "key:sk-abc"}, "score": 0.93,
         "summary": "key:sk-abc queried llama-3-8b in a sweep", "evidence": {"shapiro_w": 0.81, "queries": 120},
         "window": {"start": 1772442000000000000, "end": 1772442060000000000},
         "first_event_ts": 1772442000123456789, "event_count": 120}
ACTION = {"id": "revoke:extraction.prada:key:sk-abc:llama-3-8b:0", "ts": 1772442061000000000,
          "alert_id": ALERT["id"], "playbook": "revoke-extraction", "step": 0, "action": "revoke_principal",
          "target": "key:sk-abc", "mode": "dry-run", "status": "done", "detail": {"gateway": "nginx"}}
DEAD = {"source": "nginx_combined", "file": "access.log", "line": 7, "reason": "no request line",
        "raw_b64": "Z2FyYmFnZQ==", "raw": "garbage"}
