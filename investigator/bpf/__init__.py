"""The project's thin, typed binding over the system libbpf (ctypes).

Knows nothing of playbooks: objects, programs, maps, links, ring buffers, perf events,
feature probing and errors.  Nothing here is ever pinned.
"""

from ._lib import LOG, lib, num_possible_cpus, version
from .errors import BpfError, LibbpfMissing
from .object import BpfObject, Link, Map, Program, RingBuffer

__all__ = ["LOG", "BpfError", "BpfObject", "LibbpfMissing", "Link", "Map", "Program", "RingBuffer",
           "lib", "num_possible_cpus", "version"]
