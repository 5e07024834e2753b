-- Alt-text length percentiles: characters and words for every extracted candidate and every kept sample; unigrams
-- (filter-text's tokeniser, the unit of ALIGN's 3..20 rule) where filter-text recorded them. Alt texts are
-- whitespace-collapsed at extraction, so words = spaces + 1. Percentiles are nearest-rank and exact, from a histogram of
-- lengths (views.sql's nearest_rank_summary). Needs tables.sql and views.sql first.
CREATE OR REPLACE TEMP VIEW alt_length_values AS
    SELECT 'extracted' AS population, 1 AS ord, 'characters' AS measure, length(alt_text) AS value, count(*) AS n
    FROM candidates GROUP BY value
    UNION ALL
    SELECT 'extracted', 1, 'words', length(alt_text) - length(replace(alt_text, ' ', '')) + 1 AS value, count(*)
    FROM candidates GROUP BY value
    UNION ALL
    SELECT 'text_kept', 2, 'unigrams', unigram_count AS value, count(*) FROM text_kept
    WHERE unigram_count IS NOT NULL GROUP BY value
    UNION ALL
    SELECT 'kept', 3, 'characters', length(alt_text) AS value, count(*) FROM shards GROUP BY value
    UNION ALL
    SELECT 'kept', 3, 'words', length(alt_text) - length(replace(alt_text, ' ', '')) + 1 AS value, count(*)
    FROM shards GROUP BY value
    UNION ALL
    SELECT 'kept', 3, 'unigrams', unigram_count AS value, count(*) FROM shards
    WHERE unigram_count IS NOT NULL GROUP BY value;

SELECT population, measure AS unit, n, min, p5, p25, p50, p75, p95, max, mean
FROM nearest_rank_summary('alt_length_values')
ORDER BY ord, unit;
