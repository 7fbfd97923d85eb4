"""Read MLflow, write markdown tables and plots: the notes' generated blocks and the results README.

``python -m results render NOTES.md`` | ``readme`` | ``import-notes NOTES.md`` | ``matrix`` | ``trials ID``.
Reads MLflow only: the notes importer parses here and writes through ``sweeper.tracking``. Generated
files go under ``outputs/results/`` (configurable), never into this package.
"""
