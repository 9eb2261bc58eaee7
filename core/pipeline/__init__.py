"""High-level operations shared by the CLI, the background jobs and the pages.

Each operation reads a dataset from the workspace, runs one stage, stores a run with its
configuration and provenance, and returns ``(run_id, result)``. Importing this package
registers the job kinds.
"""

from core.pipeline.common import DEMO_DATASETS, demo_root, load_demo, package_versions, provenance
from core.pipeline.evidence import extract_evidence, get_target
from core.pipeline.mia import MIAConfig, audit_mia
from core.pipeline.blind import BlindRunConfig, audit_blind, match_dataset
from core.pipeline.crossdata import CrossDataConfig, cross_dataset_matrix
from core.pipeline.di import DIRunConfig, audit_di, compare_scorers
from core.pipeline.disentangle import DisentangleConfig, audit_disentangle, render_variant
from core.pipeline.ingest import ingest_params, ingest_report, stage_uploads

__all__ = ["ingest_params", "ingest_report", "stage_uploads", "CrossDataConfig", "cross_dataset_matrix", "DIRunConfig", "audit_di", "compare_scorers", "DisentangleConfig", "audit_disentangle", "render_variant", "BlindRunConfig", "audit_blind", "match_dataset", "DEMO_DATASETS", "demo_root", "MIAConfig", "audit_mia", "extract_evidence", "get_target", "load_demo", "package_versions", "provenance"]

from core.pipeline import reference as _reference  # noqa: E402,F401  (registers the shadow-reference job kind)
from core.pipeline import shadow_grid as _shadow_grid  # noqa: E402,F401  (registers the shadow-grid job kind)
from core.pipeline import shadow_set as _shadow_set  # noqa: E402,F401  (registers the shadow-set job kind)
