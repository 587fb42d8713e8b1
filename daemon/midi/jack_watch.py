"""Noticing that the JACK server went away while `jamd run` plays.

python-rtmidi gives no sign of it: sends into a client whose server died
still succeed, and no error callback fires, so jamd would play on into
nothing.  libjack itself does tell: `jack_on_shutdown` calls back when the
server shuts a client down.  RtMidi keeps its clients to itself, so jamd opens
one more, portless and never activated (invisible in a patchbay, which shows
ports), only to hear that call.  python-rtmidi and mido wrap no libjack call
for this, hence the three C functions through ctypes here.

The callback runs on libjack's thread and only calls `on_lost`, which must
just enqueue (the run command's waiter wakes the main thread, which stops).

The same client hears ports come and go (`on_ports`: JACK's port registration
callback), so the hotplug watcher lists the ports only when one did: each
listing maps the server's whole port table (`jack_memory.JackPages`), and
listing every 0.5 s, then giving the pages back, cost ~0.9 % of a core.  For
that the client is activated; with no process callback it takes no part in
the server's cycles (jack2 runs a client's process thread only for clients
that have one).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

_JACK_NO_START_SERVER = 0x01
_SHUTDOWN_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
# JackPortRegistrationCallback(jack_port_id_t port, int register, void *arg)
_PORT_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_int, ctypes.c_void_p)


def _loaded_libjack() -> str | None:
    """The libjack this process already uses (python-rtmidi's wheels bundle their
    own copy): a second copy would map the server's shared memory a second time
    and double jamd's resident memory."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1]
                if "/libjack" in path and ".so" in path:
                    return path
    except OSError:
        pass
    return None


def _libjack():
    name = _loaded_libjack() or ctypes.util.find_library("jack") or "libjack.so.0"
    lib = ctypes.CDLL(name)
    lib.jack_client_open.restype = ctypes.c_void_p
    lib.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.jack_on_shutdown.restype = None
    lib.jack_on_shutdown.argtypes = [ctypes.c_void_p, _SHUTDOWN_CALLBACK, ctypes.c_void_p]
    lib.jack_client_close.restype = ctypes.c_int
    lib.jack_client_close.argtypes = [ctypes.c_void_p]
    lib.jack_set_port_registration_callback.restype = ctypes.c_int
    lib.jack_set_port_registration_callback.argtypes = [ctypes.c_void_p, _PORT_CALLBACK, ctypes.c_void_p]
    lib.jack_activate.restype = ctypes.c_int
    lib.jack_activate.argtypes = [ctypes.c_void_p]
    return lib


class JackWatch:
    """A portless JACK client that hears the server shut down and, given `on_ports`, ports
    come and go (`hears_ports`: True once that callback is in place)."""

    def __init__(self, lib, client: int, on_lost: Callable[[], None],
                 on_ports: Callable[[], None] | None = None):
        self._lib = lib
        self._client: int | None = client
        self._on_lost = on_lost
        self._on_ports = on_ports
        self.lost = False
        self.hears_ports = False
        # kept referenced: libjack holds only the C pointers
        self._callback = _SHUTDOWN_CALLBACK(self._shutdown)
        self._port_callback = _PORT_CALLBACK(self._ports)
        lib.jack_on_shutdown(client, self._callback, None)
        if on_ports is not None:
            # callbacks are set before activation (libjack refuses them after)
            if lib.jack_set_port_registration_callback(client, self._port_callback, None) == 0 \
                    and lib.jack_activate(client) == 0:
                self.hears_ports = True
            else:
                log.debug("no JACK port registration callback: the hotplug watcher polls")

    @classmethod
    def open(cls, client_name: str, on_lost: Callable[[], None],
             on_ports: Callable[[], None] | None = None) -> JackWatch | None:
        """None (with a debug line) where libjack cannot be loaded or reached:
        jamd then plays on without the watch, as before."""
        try:
            lib = _libjack()
            status = ctypes.c_int(0)
            client = lib.jack_client_open(client_name.encode(), _JACK_NO_START_SERVER, ctypes.byref(status))
        except (OSError, AttributeError) as exc:
            log.debug("no JACK server watch: %s", exc)
            return None
        if not client:
            log.debug("no JACK server watch: jack_client_open failed (status 0x%x)", status.value)
            return None
        return cls(lib, client, on_lost, on_ports)

    def _ports(self, _port, _register, _arg) -> None:
        self._on_ports()  # libjack's notification thread: only sets an event

    def _shutdown(self, _arg) -> None:
        self.lost = True
        self._on_lost()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and not self.lost:
            # after a shutdown the server has already dropped the client
            self._lib.jack_client_close(client)
