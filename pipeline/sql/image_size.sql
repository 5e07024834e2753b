-- Original image size percentiles (before resizing): width, height, shorter side and megapixels of every image fetched
-- with status ok (one row per distinct URL) and of every kept sample. Needs tables.sql and views.sql first.
WITH sizes AS (
    SELECT 'fetched' AS population, original_width AS width, original_height AS height
    FROM images WHERE status = 'ok' AND original_width > 0 AND original_height > 0
    UNION ALL
    SELECT 'kept' AS population, original_width, original_height
    FROM shards WHERE original_width > 0 AND original_height > 0
),
measures AS (
    SELECT population, 'width_px' AS measure, width::DOUBLE AS value FROM sizes
    UNION ALL
    SELECT population, 'height_px', height::DOUBLE FROM sizes
    UNION ALL
    SELECT population, 'shorter_side_px', least(width, height)::DOUBLE FROM sizes
    UNION ALL
    SELECT population, 'megapixels', width::DOUBLE * height / 1e6 FROM sizes
),
summary AS (
    SELECT
        population,
        measure,
        count(*) AS n,
        quantile_disc(value, [0.05, 0.25, 0.5, 0.75, 0.95]) AS q,
        min(value) AS min,
        max(value) AS max
    FROM measures
    GROUP BY population, measure
)
SELECT population, measure, n, round(min, 3) AS min, round(q[1], 3) AS p5, round(q[2], 3) AS p25,
       round(q[3], 3) AS p50, round(q[4], 3) AS p75, round(q[5], 3) AS p95, round(max, 3) AS max
FROM summary
ORDER BY population, CASE measure WHEN 'width_px' THEN 1 WHEN 'height_px' THEN 2 WHEN 'shorter_side_px' THEN 3 ELSE 4 END;
