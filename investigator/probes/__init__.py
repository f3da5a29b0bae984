"""The probe registry: manifests (probes/*.yaml) -> what to load, which hook to use,
parameters, and how maps become evidence."""

from .manifest import EvidenceField, HookAlternative, Param, ProbeManifest, registry
from .instance import ProbeInstance, ProbeUnavailable

__all__ = ["EvidenceField", "HookAlternative", "Param", "ProbeInstance", "ProbeManifest",
           "ProbeUnavailable", "registry"]
