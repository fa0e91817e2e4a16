"""Interop: moving codings between qcode's project store and the tools reviewers already use.

``sheets`` exports review spreadsheets (XLSX, CSV) and imports the filled-in sheets back as
decisions. ``qdc`` and ``refi`` exchange codebooks (QDC) and projects (QDPX) with NVivo,
ATLAS.ti, MAXQDA and QualCoder through the REFI-QDA standard. Everything goes through
``pipeline.store.Store``, so imports are checked against the same unit versions as the review
pages.
"""
