"""The multi-domain study's cells, one module per kind: baseline, teachers, students, tune."""
