-- Alt-text length percentiles: characters and words for every extracted candidate and every kept sample; unigrams
-- (filter-text's tokeniser, the unit of ALIGN's 3..20 rule) where filter-text recorded them. Alt texts are
-- whitespace-collapsed at extraction, so words = spaces + 1. Percentiles are nearest-rank (the smallest length with
-- at least q of the values at or below it), computed exactly from a histogram of lengths: a low-cardinality
-- aggregation instead of a sort of every value. Needs tables.sql and views.sql first.
WITH histogram AS (
    SELECT 'extracted' AS population, 'characters' AS unit, length(alt_text) AS value, count(*) AS n
    FROM candidates GROUP BY value
    UNION ALL
    SELECT 'extracted', 'words', length(alt_text) - length(replace(alt_text, ' ', '')) + 1 AS value, count(*)
    FROM candidates GROUP BY value
    UNION ALL
    SELECT 'text_kept', 'unigrams', unigram_count AS value, count(*) FROM text_kept
    WHERE unigram_count IS NOT NULL GROUP BY value
    UNION ALL
    SELECT 'kept', 'characters', length(alt_text) AS value, count(*) FROM shards GROUP BY value
    UNION ALL
    SELECT 'kept', 'words', length(alt_text) - length(replace(alt_text, ' ', '')) + 1 AS value, count(*)
    FROM shards GROUP BY value
    UNION ALL
    SELECT 'kept', 'unigrams', unigram_count AS value, count(*) FROM shards
    WHERE unigram_count IS NOT NULL GROUP BY value
),
cumulative AS (
    SELECT population, unit, value, n,
           sum(n) OVER (PARTITION BY population, unit ORDER BY value) AS at_or_below,
           sum(n) OVER (PARTITION BY population, unit) AS total
    FROM histogram
)
SELECT
    population,
    unit,
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
GROUP BY population, unit
ORDER BY CASE population WHEN 'extracted' THEN 1 WHEN 'text_kept' THEN 2 ELSE 3 END, unit;
