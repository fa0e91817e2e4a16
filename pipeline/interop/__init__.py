"""Interop: moving codings between qcode's project store and the tools reviewers already use.

``sheets`` exports review spreadsheets (XLSX, CSV) and imports the filled-in sheets back as
decisions. Everything goes through ``pipeline.store.Store``, so imports are checked against the
same unit versions as the review pages.
"""
