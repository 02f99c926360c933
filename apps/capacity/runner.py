"""Runs a capacity search in the worker (contract: implementation in progress)."""


def run_search(search_id: int) -> str:
    raise NotImplementedError
