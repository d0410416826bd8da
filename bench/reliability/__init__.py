"""Reliability harness: live ragd processes, mixed multi-tenant traffic, faults and figures.

``bench/load.py`` runs the long scenarios (load ramp, soak, fault table) and prints figures;
``tests/reliability/`` runs short versions of the fault scenarios against the same harness.
"""
