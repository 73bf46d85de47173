"""Where the Kubernetes API is and how to authenticate: explicit URL, kubeconfig, or in-cluster.

Resolved once at start, so a missing token or a broken kubeconfig stops the sidecar with a clear
message instead of failing every cycle. Token *files* are re-read per request: projected
service-account tokens rotate while the pod runs.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.autoscaler.actuators.base import ActuatorSetupError
from gateway.policy.autoscaler import KubernetesActuatorConfig


@dataclass(frozen=True)
class KubeCredentials:
    server: str
    ssl: ssl.SSLContext | bool
    """What aiohttp's ``ssl=`` takes: a context, or ``False`` to skip verification."""
    token: str = ""
    token_file: str = ""

    def headers(self) -> dict[str, str]:
        token = Path(self.token_file).read_text().strip() if self.token_file else self.token
        return {"Authorization": f"Bearer {token}"} if token else {}


def resolve(config: KubernetesActuatorConfig, env: Mapping[str, str] = os.environ) -> KubeCredentials:
    """``api_url`` if set, else ``kubeconfig`` if set, else the pod's service account."""
    if config.api_url:
        token_file = config.token_file if Path(config.token_file).is_file() else ""
        ca_file = config.ca_file if Path(config.ca_file).is_file() else None
        server = config.api_url.rstrip("/")
        return KubeCredentials(server, _ssl(config.verify_tls, ca_file), token_file=token_file)
    if config.kubeconfig:
        return from_kubeconfig(config.kubeconfig, config.context, config.verify_tls)
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise ActuatorSetupError("not in a cluster (no KUBERNETES_SERVICE_HOST): set api_url or kubeconfig")
    if not Path(config.token_file).is_file():
        raise ActuatorSetupError(f"service-account token {config.token_file} is missing")
    host = f"[{host}]" if ":" in host else host
    ca_file = config.ca_file if Path(config.ca_file).is_file() else None
    context = _ssl(config.verify_tls, ca_file)
    return KubeCredentials(f"https://{host}:{port}", context, token_file=config.token_file)


def from_kubeconfig(path: str, context: str = "", verify_tls: bool = True) -> KubeCredentials:
    """Server, CA and token or client certificate of one kubeconfig context (exec plugins unsupported)."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        name = context or doc.get("current-context", "")
        ctx = _named(doc, "contexts", name, path)["context"]
        cluster = _named(doc, "clusters", ctx["cluster"], path)["cluster"]
        user = (_named(doc, "users", ctx["user"], path).get("user") or {}) if ctx.get("user") else {}
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ActuatorSetupError(f"kubeconfig {path}: cannot read it: {type(exc).__name__}: {exc}") from None
    if "exec" in user or "auth-provider" in user:
        raise ActuatorSetupError(
            f"kubeconfig {path}: exec and auth-provider users are unsupported; use a token"
        )
    base = Path(path).resolve().parent
    verify = verify_tls and not cluster.get("insecure-skip-tls-verify", False)
    ca_file, ca_data = _file(cluster, "certificate-authority", base), _data(cluster, "certificate-authority")
    context_ssl = _ssl(verify, ca_file, ca_data)
    if isinstance(context_ssl, ssl.SSLContext):
        _load_client_cert(context_ssl, user, base, path)
    token_file = _file(user, "tokenFile", base) or ""
    return KubeCredentials(str(cluster["server"]).rstrip("/"), context_ssl, user.get("token", ""), token_file)


def _ssl(verify: bool, ca_file: str | None = None, ca_data: bytes | None = None) -> ssl.SSLContext | bool:
    if not verify:
        return False
    context = ssl.create_default_context(cafile=ca_file)
    if ca_data:
        context.load_verify_locations(cadata=ca_data.decode())
    return context


def _load_client_cert(context: ssl.SSLContext, user: dict[str, Any], base: Path, path: str) -> None:
    cert_file, key_file = _file(user, "client-certificate", base), _file(user, "client-key", base)
    cert_data, key_data = _data(user, "client-certificate"), _data(user, "client-key")
    if cert_data and key_data:
        with tempfile.TemporaryDirectory() as tmp:  # ssl only loads key pairs from files
            cert_file, key_file = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            Path(cert_file).write_bytes(cert_data)
            Path(key_file).write_bytes(key_data)
            context.load_cert_chain(cert_file, key_file)
    elif cert_file and key_file:
        context.load_cert_chain(cert_file, key_file)
    elif cert_file or key_file or cert_data or key_data:
        raise ActuatorSetupError(f"kubeconfig {path}: a client certificate needs both certificate and key")


def _named(doc: dict[str, Any], section: str, name: str, path: str) -> dict[str, Any]:
    for item in doc.get(section) or []:
        if item.get("name") == name:
            return dict(item)
    raise ActuatorSetupError(f"kubeconfig {path}: no entry named '{name}' in {section}")


def _file(section: dict[str, Any], key: str, base: Path) -> str | None:
    value = section.get(key)
    return str(base / value) if value else None


def _data(section: dict[str, Any], key: str) -> bytes | None:
    value = section.get(f"{key}-data")
    return base64.b64decode(value) if value else None
