"""Connects the tracked models' save/delete signals to the audit trail. CONTRACT STUB: issue 16 helper fills it."""
