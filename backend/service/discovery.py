"""Advertise the backend over zeroconf (mDNS/DNS-SD) so the add-on finds it without typing a URL.

The service type is :data:`shared.api.SERVICE_TYPE`; TXT records carry the API version, model id,
device and whether a token is required, so the add-on can show them before connecting. A backend
bound to loopback is advertised on loopback only (``Zeroconf(interfaces=["127.0.0.1"])``), so it
is visible to this machine and not announced to the LAN. Browsing lives in the shared client
(:func:`shared.client.discover`) because Blender uses it too.
"""

from __future__ import annotations

import logging
import socket
import threading

from zeroconf import IPVersion, ServiceInfo, Zeroconf

from shared import api

from .auth import is_loopback

log = logging.getLogger(__name__)


def txt_records(info: api.ModelInfo, token_required: bool) -> dict[str, str]:
    """TXT records from an engine's ``info()`` (short keys: TXT records are small)."""
    return {
        "api": str(api.API_VERSION),
        "path": api.API_PREFIX,
        "model": info.model_id,
        "preset": info.preset,
        "device": info.device,
        "token": "1" if token_required else "0",
    }


def _addresses(host: str) -> tuple[list[str] | None, list[str]]:
    """``(zeroconf interfaces, advertised IPv4 addresses)`` for a bind host."""
    if is_loopback(host):
        return ["127.0.0.1"], ["127.0.0.1"]
    if host in ("0.0.0.0", ""):
        import ifaddr  # zeroconf's own dependency

        ips = [
            ip.ip
            for adapter in ifaddr.get_adapters()
            for ip in adapter.ips
            # Loopback and link-local addresses are useless (or misleading) to other machines.
            if isinstance(ip.ip, str) and not ip.ip.startswith(("127.", "169.254."))
        ]
        return None, ips or ["127.0.0.1"]
    return [host], [host]


class Advertiser:
    """Registers the backend on zeroconf in a background thread and unregisters it on :meth:`close`.

    Registration probes the network for name conflicts (about 1.5 s), so it runs in the background
    and never delays the server's start.
    """

    def __init__(self, host: str, port: int, txt: dict[str, str], instance: str | None = None) -> None:
        self.host, self.port, self.txt = host, port, txt
        hostname = socket.gethostname().split(".")[0] or "asset2vec"
        self.instance = instance or f"Asset2Vec on {hostname} port {port}"
        self._zc: Zeroconf | None = None
        self._info: ServiceInfo | None = None
        self._registered = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def name(self) -> str:
        """The full service name (``instance._asset2vec._tcp.local.``) once registered."""
        return self._info.name if self._info else f"{self.instance}.{api.SERVICE_TYPE}"

    def start(self) -> Advertiser:
        """Start registering (returns at once; :meth:`wait` blocks until registered)."""
        self._thread = threading.Thread(target=self._register, name="asset2vec-zeroconf", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float = 10.0) -> bool:
        """Whether registration finished within ``timeout`` seconds."""
        return self._registered.wait(timeout)

    def _register(self) -> None:
        interfaces, addresses = _addresses(self.host)
        try:
            with self._lock:
                if self._closed:
                    return
                zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only) if interfaces else Zeroconf(
                    ip_version=IPVersion.V4Only
                )
                self._zc = zc
                self._info = ServiceInfo(
                    api.SERVICE_TYPE,
                    f"{self.instance}.{api.SERVICE_TYPE}",
                    addresses=[socket.inet_aton(a) for a in addresses],
                    port=self.port,
                    properties=self.txt,
                    server=f"asset2vec-{socket.gethostname().split('.')[0]}-{self.port}.local.",
                )
            # allow_name_change: a second backend on the same machine gets "... (2)" instead of failing.
            zc.register_service(self._info, allow_name_change=True)
            self._registered.set()
            log.info("advertised as %r on %s", self._info.name, ", ".join(addresses))
        except Exception as e:  # noqa: BLE001 - discovery is a convenience; the server works without it
            log.warning("zeroconf advertisement failed (%s); clients must use the URL directly", e)

    def close(self) -> None:
        """Unregister (so browsers see the backend leave) and close the zeroconf instance."""
        with self._lock:
            self._closed = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        zc, info = self._zc, self._info
        self._zc = None
        if zc is None:
            return
        try:
            if info is not None and self._registered.is_set():
                zc.unregister_service(info)
        except Exception as e:  # noqa: BLE001
            log.warning("zeroconf unregistration failed: %s", e)
        finally:
            zc.close()
