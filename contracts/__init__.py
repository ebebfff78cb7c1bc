"""The bottom layer shared by ``workflows/`` and ``engine/``: what travels through
Temporal history and between the interpreter and the activities.

``dsl`` ← ``contracts`` ← {``workflows``, ``engine``} ← ``runtime`` ← ``api``:
the interpreter and the engine never import each other; both speak these
models (activity requests and answers, ``JourneyInput``, ``UserEvent``), the
activity names, the search attributes and the pure condition evaluator.
Everything here is pure: no I/O at import or call.
"""
