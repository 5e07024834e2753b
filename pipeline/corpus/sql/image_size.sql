-- Original image size percentiles (before resizing): width, height, shorter side and megapixels (to 0.01) of every
-- image fetched with status ok (one row per distinct URL) and of every kept sample. Nearest-rank percentiles, exact,
-- from a histogram of each measure (views.sql's nearest_rank_summary). Needs tables.sql and views.sql first.
CREATE OR REPLACE TEMP VIEW image_size_values AS
WITH sizes AS (
    SELECT 'fetched' AS population, original_width AS width, original_height AS height
    FROM images WHERE status = 'ok' AND original_width > 0 AND original_height > 0
    UNION ALL
    SELECT 'kept' AS population, original_width, original_height
    FROM shards WHERE original_width > 0 AND original_height > 0
)
SELECT population, 1 AS ord, 'width_px' AS measure, width::DOUBLE AS value, count(*) AS n
FROM sizes GROUP BY population, value
UNION ALL
SELECT population, 2, 'height_px', height::DOUBLE AS value, count(*) FROM sizes GROUP BY population, value
UNION ALL
SELECT population, 3, 'shorter_side_px', least(width, height)::DOUBLE AS value, count(*)
FROM sizes GROUP BY population, value
UNION ALL
SELECT population, 4, 'megapixels', round(width::DOUBLE * height / 1e6, 2) AS value, count(*)
FROM sizes GROUP BY population, value;

SELECT population, measure, n, min, p5, p25, p50, p75, p95, max
FROM nearest_rank_summary('image_size_values')
ORDER BY population, ord;
