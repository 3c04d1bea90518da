"""Reading the store back: tables and figures over finished runs, written to a folder and logged as a run."""
