"""Read MLflow, write markdown tables and plots: the notes' generated blocks and results/README.md.

``python -m results render NOTES.md`` | ``readme`` | ``import-notes NOTES.md`` | ``trials PARENT_RUN_ID``.
Never writes MLflow, except ``results.importer`` (the notes' history).
"""
