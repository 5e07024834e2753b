-- Views over a corpus's Parquet tables, for the DuckDB CLI (`python -m pipeline stats` builds its own, empty ones
-- for stages that have not run). Every other .sql file here queries these views, never a path.
--
-- Usage, from the repository root (any DuckDB >= 1.1 CLI, e.g. `pip install duckdb-cli`):
--   duckdb
--   D SET VARIABLE corpus = 'build/corpus';
--   D .read pipeline/corpus/sql/tables.sql
--   D .read pipeline/corpus/sql/views.sql
--   D .read pipeline/corpus/sql/funnel.sql          -- or any other query file
-- or in one line:
--   duckdb -c "SET VARIABLE corpus = 'build/corpus'" -c ".read pipeline/corpus/sql/tables.sql" \
--          -c ".read pipeline/corpus/sql/views.sql" -c ".read pipeline/corpus/sql/funnel.sql"
--
-- This file assumes every stage has run (read_parquet fails on a folder with no Parquet file); on a partial corpus
-- use `python -m pipeline stats DIR`, which also says which stages are pending.
CREATE OR REPLACE VIEW candidates AS SELECT * FROM read_parquet(getvariable('corpus') || '/candidates/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW record_errors AS SELECT * FROM read_parquet(getvariable('corpus') || '/record_errors/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW text_kept AS SELECT * FROM read_parquet(getvariable('corpus') || '/text_kept/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW images AS SELECT * FROM read_parquet(getvariable('corpus') || '/images/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW samples AS SELECT * FROM read_parquet(getvariable('corpus') || '/samples/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW shards AS SELECT * FROM read_parquet(getvariable('corpus') || '/shards/*.parquet', union_by_name = true);
CREATE OR REPLACE VIEW rejected AS SELECT * FROM read_parquet(getvariable('corpus') || '/rejected/*.parquet', union_by_name = true);
-- A finished corpus holds its surviving candidates in shards/; see views.sql for what these mean.
SET VARIABLE held_table = 'shards';
SET VARIABLE held_place = 'kept';
SET VARIABLE held_minus_stages = []::VARCHAR[];
