"""The real NGINX on loopback of the playbook tests: bench/nginx_local.py, shared with
``ramparts bench playbooks`` so both drive the same server configuration."""

from ramparts.bench.nginx_local import Nginx, nginx_binary

__all__ = ["Nginx", "nginx_binary"]
