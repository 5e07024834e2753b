-- The balance check, per candidate: every extracted candidate_id must appear exactly once across held (shards/ or
-- the in-flight table) and rejected/, and nothing else may appear. One row per kind of problem, with its count and
-- up to 10 example ids; no row means the books balance. Needs tables.sql and views.sql first.
--   duplicated_in_candidates  the same candidate_id twice in candidates/ (extract wrote it twice)
--   missing                   extracted but neither held nor rejected: lost
--   placed_more_than_once     held and rejected, or rejected twice
--   unknown                   held or rejected but never extracted
WITH extracted_ids AS (
    SELECT candidate_id, count(*) AS times FROM extracted GROUP BY candidate_id
),
placed_ids AS (
    SELECT candidate_id, count(*) AS times FROM placed GROUP BY candidate_id
),
compared AS (
    SELECT
        coalesce(e.candidate_id, p.candidate_id) AS candidate_id,
        coalesce(e.times, 0) AS extracted_times,
        coalesce(p.times, 0) AS placed_times
    FROM extracted_ids AS e
    FULL OUTER JOIN placed_ids AS p ON e.candidate_id = p.candidate_id
    WHERE e.candidate_id IS NULL OR p.candidate_id IS NULL OR e.times <> 1 OR p.times <> 1
),
problems AS (
    SELECT 'duplicated_in_candidates' AS problem, candidate_id FROM compared WHERE extracted_times > 1
    UNION ALL
    SELECT 'missing' AS problem, candidate_id FROM compared WHERE extracted_times > 0 AND placed_times = 0
    UNION ALL
    SELECT 'placed_more_than_once' AS problem, candidate_id FROM compared WHERE extracted_times > 0 AND placed_times > 1
    UNION ALL
    SELECT 'unknown' AS problem, candidate_id FROM compared WHERE extracted_times = 0
)
SELECT problem, count(*) AS candidates, list(candidate_id ORDER BY candidate_id)[1:10] AS examples
FROM problems
GROUP BY problem
ORDER BY problem;
