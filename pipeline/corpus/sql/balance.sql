-- The balance check, per candidate: every extracted candidate_id must appear exactly once across held (shards/ or
-- the in-flight table) and rejected/, and nothing else may appear. One row per kind of problem, with its count and
-- up to 10 example ids; no row means the books balance. Needs tables.sql and views.sql first.
--   duplicated_in_candidates  the same candidate_id extracted twice (twice in candidates/, or also in rejected/extract)
--   missing                   extracted but neither held nor rejected: lost
--   placed_more_than_once     held and rejected, or rejected twice
--   unknown                   held or rejected but never extracted
-- Speed: one aggregation over both sides keyed by the id's 64-bit hash (integer keys, no join) finds the few hashes
-- whose counts are not (1, 1); only those are then checked on the ids themselves, so a hash collision can cost a
-- second look but never hide or invent a problem.
WITH sides AS (
    SELECT hash(candidate_id) AS id_hash, 1::UTINYINT AS extracted_side, 0::UTINYINT AS placed_side FROM extracted
    UNION ALL
    SELECT hash(candidate_id) AS id_hash, 0::UTINYINT, 1::UTINYINT FROM placed
),
suspicious AS (
    SELECT id_hash FROM sides GROUP BY id_hash HAVING sum(extracted_side) <> 1 OR sum(placed_side) <> 1
),
compared AS (
    SELECT candidate_id, sum(extracted_side) AS extracted_times, sum(placed_side) AS placed_times
    FROM (
        SELECT candidate_id, 1 AS extracted_side, 0 AS placed_side FROM extracted
        WHERE hash(candidate_id) IN (SELECT id_hash FROM suspicious)
        UNION ALL
        SELECT candidate_id, 0 AS extracted_side, 1 AS placed_side FROM placed
        WHERE hash(candidate_id) IN (SELECT id_hash FROM suspicious)
    )
    GROUP BY candidate_id
    HAVING sum(extracted_side) <> 1 OR sum(placed_side) <> 1
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
