"""Reading the store back: tables (and, later, plots) over finished runs."""
