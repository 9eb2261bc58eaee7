"""Streamlit helpers shared by the pages (the only package below pages/ that imports
Streamlit)."""

from core.ui.common import page_setup, workspace, settings, dataset_picker, job_panel, empty_state, failed_clips, cache_panel, record_details

__all__ = ["page_setup", "workspace", "settings", "dataset_picker", "job_panel", "empty_state", "failed_clips", "cache_panel", "record_details"]
