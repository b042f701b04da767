"""editlab: edit a language model's facts live and see honestly what the edit did.

No Streamlit here: the CLI (``editlab``) and the app are thin front ends over this library.
"""

from editlab.facts.fact import Fact, Neighbor, negate
from editlab.measure.probes import Measure, Probe, ProbeReport, ProbeRow, default_probes, measure
from editlab.methods import EditError
from editlab.methods import available as available_methods
from editlab.model.handle import DEFAULT_MODEL, SUPPORTED_FAMILIES, ArchMap, ModelHandle, load_model
from editlab.session import EditRecord, EditSession

__version__ = "0.1.0"

__all__ = [
    "Fact",
    "Neighbor",
    "negate",
    "EditError",
    "available_methods",
    "DEFAULT_MODEL",
    "SUPPORTED_FAMILIES",
    "ArchMap",
    "ModelHandle",
    "load_model",
    "Measure",
    "Probe",
    "ProbeReport",
    "ProbeRow",
    "default_probes",
    "measure",
    "EditRecord",
    "EditSession",
]
