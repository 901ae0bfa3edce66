"""Judgement: observations + expectations -> findings -> verdict (pure functions).

``engine`` runs the rule catalogue and applies the verdict table; ``registry`` is where the
topic modules (identity, kind, behaviour, requests, client_certs, consistency, path,
reflector, unknown) register their rules; ``facts`` and ``behaviour_facts`` are their shared
vocabulary; ``signatures`` (with ``signatures.json``) names products; ``agent_cert`` is
check-cert's table. Rule ids are public API: never renumber or reuse them.
"""
