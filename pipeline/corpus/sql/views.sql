-- Derived views the queries share (run after tables.sql; see its header for how to run these files).
--
-- Variables (tables.sql sets them for a finished corpus; `pipeline stats` sets them from the _SUCCESS markers):
--   held_table         the table holding the candidates that no stage dropped: 'shards' when write-shards has run,
--                      else the newest output of a finished stage ('samples', 'text_kept' or 'candidates')
--   held_place         how the funnel names them: 'kept', or 'in flight (text_kept/)' on a partial corpus
--   held_minus_stages  stages that ran after held_table was written and dropped some of its rows (fetch reads
--                      text_kept/ and writes no row per survivor, so its rejections are taken out of it)

-- Every extracted candidate: the rows of candidates/ plus the extraction-time drops, which extract records only in
-- rejected/ (a data: URL is a candidate too, see ARCHITECTURE.md). An id in both would count as extracted twice,
-- and balance.sql reports it.
CREATE OR REPLACE VIEW extracted AS
SELECT candidate_id FROM candidates
UNION ALL
SELECT candidate_id FROM rejected WHERE stage = 'extract';

-- Candidates that survived every stage run so far.
CREATE OR REPLACE VIEW held AS
SELECT survivors.candidate_id, getvariable('held_place') AS place
FROM query_table(getvariable('held_table')) AS survivors
WHERE NOT EXISTS (
    SELECT 1 FROM rejected AS dropped
    WHERE list_contains(getvariable('held_minus_stages'), dropped.stage)
      AND dropped.candidate_id = survivors.candidate_id
);

-- Where each candidate ended: held (kept or in flight), or rejected by one stage. The books balance when every
-- extracted candidate_id appears here exactly once and nothing else does.
CREATE OR REPLACE VIEW placed AS
SELECT candidate_id, place FROM held
UNION ALL
SELECT candidate_id, 'rejected by ' || stage AS place FROM rejected;

-- Exact nearest-rank percentiles from a histogram view (population, ord, measure, value, n): per population and
-- measure, the smallest value with at least q of the counts at or below it, plus n, min, max and mean. Counting each
-- distinct value once (a low-cardinality aggregation) replaces a sort of every value. Used by alt_length.sql and
-- image_size.sql.
CREATE OR REPLACE TEMP MACRO nearest_rank_summary(histogram_view) AS TABLE
WITH cumulative AS (
    SELECT population, ord, measure, value, n,
           sum(n) OVER (PARTITION BY population, measure ORDER BY value) AS at_or_below,
           sum(n) OVER (PARTITION BY population, measure) AS total
    FROM query_table(histogram_view)
)
SELECT
    population,
    any_value(ord) AS ord,
    measure,
    any_value(total) AS n,
    min(value) AS min,
    min(value) FILTER (WHERE at_or_below >= 0.05 * total) AS p5,
    min(value) FILTER (WHERE at_or_below >= 0.25 * total) AS p25,
    min(value) FILTER (WHERE at_or_below >= 0.50 * total) AS p50,
    min(value) FILTER (WHERE at_or_below >= 0.75 * total) AS p75,
    min(value) FILTER (WHERE at_or_below >= 0.95 * total) AS p95,
    max(value) AS max,
    round(sum(value * n) / any_value(total), 2) AS mean
FROM cumulative
GROUP BY population, measure;
