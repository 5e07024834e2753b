-- Enhanced-caption length percentiles beside the alt texts of the same samples: characters and whitespace words
-- (captions are single-spaced like alt texts, so words = spaces + 1). Nearest-rank, exact (views.sql's
-- nearest_rank_summary); no rows when no sample has a caption. Needs tables.sql and views.sql first.
CREATE OR REPLACE TEMP VIEW caption_length_values AS
    SELECT 'enhanced_caption' AS population, 1 AS ord, 'characters' AS measure, length(enhanced_caption) AS value,
           count(*) AS n
    FROM shards WHERE enhanced_caption IS NOT NULL GROUP BY value
    UNION ALL
    SELECT 'enhanced_caption', 1, 'words', length(enhanced_caption) - length(replace(enhanced_caption, ' ', '')) + 1
           AS value, count(*)
    FROM shards WHERE enhanced_caption IS NOT NULL GROUP BY value
    UNION ALL
    SELECT 'alt_text of captioned', 2, 'characters', length(alt_text) AS value, count(*)
    FROM shards WHERE enhanced_caption IS NOT NULL GROUP BY value
    UNION ALL
    SELECT 'alt_text of captioned', 2, 'words', length(alt_text) - length(replace(alt_text, ' ', '')) + 1 AS value,
           count(*)
    FROM shards WHERE enhanced_caption IS NOT NULL GROUP BY value;

SELECT population, measure AS unit, n, min, p5, p25, p50, p75, p95, max, mean
FROM nearest_rank_summary('caption_length_values')
ORDER BY ord, unit;
