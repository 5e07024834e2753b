-- The funnel: extracted candidates, the drops of each stage by reason (in data-path order), and what is held at the
-- end (kept in shards/, or still in flight on a partial corpus). Needs tables.sql and views.sql first.
SELECT 'extracted' AS step, 0 AS stage_order, NULL AS stage, NULL AS reason, count(*) AS candidates
FROM extracted
UNION ALL
SELECT
    'dropped' AS step,
    CASE stage WHEN 'extract' THEN 1 WHEN 'filter-text' THEN 2 WHEN 'fetch' THEN 3 WHEN 'filter-image' THEN 4 ELSE 5 END
        AS stage_order,
    stage,
    reason,
    count(*) AS candidates
FROM rejected
GROUP BY stage, reason
UNION ALL
SELECT 'held' AS step, 9 AS stage_order, NULL AS stage, place AS reason, count(*) AS candidates
FROM held
GROUP BY place
ORDER BY stage_order, candidates DESC, reason;
