"""Working with a finished corpus: DuckDB statistics and SQL, the HTML report, resharding."""
