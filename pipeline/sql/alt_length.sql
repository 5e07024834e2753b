-- Alt-text length percentiles: characters and whitespace-separated words for every extracted candidate and every kept
-- sample; unigrams (filter-text's tokeniser, the unit of ALIGN's 3..20 rule) where filter-text recorded them.
-- Needs tables.sql and views.sql first.
WITH lengths AS (
    SELECT 'extracted' AS population, 'characters' AS unit, length(alt_text) AS value FROM candidates
    UNION ALL
    SELECT 'extracted', 'words', len(string_split(alt_text, ' ')) FROM candidates
    UNION ALL
    SELECT 'text_kept', 'unigrams', unigram_count FROM text_kept
    UNION ALL
    SELECT 'kept', 'characters', length(alt_text) FROM shards
    UNION ALL
    SELECT 'kept', 'words', len(string_split(alt_text, ' ')) FROM shards
    UNION ALL
    SELECT 'kept', 'unigrams', unigram_count FROM shards
),
summary AS (
    SELECT
        population,
        unit,
        count(value) AS n,
        quantile_disc(value, [0.05, 0.25, 0.5, 0.75, 0.95]) AS q,
        min(value) AS min,
        max(value) AS max,
        round(avg(value), 2) AS mean
    FROM lengths
    GROUP BY population, unit
)
SELECT population, unit, n, min, q[1] AS p5, q[2] AS p25, q[3] AS p50, q[4] AS p75, q[5] AS p95, max, mean
FROM summary
WHERE n > 0
ORDER BY CASE population WHEN 'extracted' THEN 1 WHEN 'text_kept' THEN 2 ELSE 3 END, unit;
