"""The results ledger: results.sqlite (schema, reads, writes) and the compute-matched comparison.

It sits beneath both the study (which writes it) and the report (which reads it), so neither has to
import the other.
"""

from growmerge.ledger.store import FINAL_STEP, Cell, Results, headline_cells, mean_cell, record_model_dir

__all__ = ["FINAL_STEP", "Cell", "Results", "headline_cells", "mean_cell", "record_model_dir"]
