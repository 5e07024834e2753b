-- Original image size percentiles (before resizing): width, height, shorter side and megapixels (to 0.01) of every
-- image fetched with status ok (one row per distinct URL) and of every kept sample. Nearest-rank percentiles, exact,
-- from a histogram of each measure (see alt_length.sql). Needs tables.sql and views.sql first.
WITH sizes AS (
    SELECT 'fetched' AS population, original_width AS width, original_height AS height
    FROM images WHERE status = 'ok' AND original_width > 0 AND original_height > 0
    UNION ALL
    SELECT 'kept' AS population, original_width, original_height
    FROM shards WHERE original_width > 0 AND original_height > 0
),
histogram AS (
    SELECT population, 1 AS ord, 'width_px' AS measure, width::DOUBLE AS value, count(*) AS n
    FROM sizes GROUP BY population, value
    UNION ALL
    SELECT population, 2, 'height_px', height::DOUBLE AS value, count(*) FROM sizes GROUP BY population, value
    UNION ALL
    SELECT population, 3, 'shorter_side_px', least(width, height)::DOUBLE AS value, count(*)
    FROM sizes GROUP BY population, value
    UNION ALL
    SELECT population, 4, 'megapixels', round(width::DOUBLE * height / 1e6, 2) AS value, count(*)
    FROM sizes GROUP BY population, value
),
cumulative AS (
    SELECT population, ord, measure, value, n,
           sum(n) OVER (PARTITION BY population, measure ORDER BY value) AS at_or_below,
           sum(n) OVER (PARTITION BY population, measure) AS total
    FROM histogram
)
SELECT
    population,
    measure,
    any_value(total) AS n,
    min(value) AS min,
    min(value) FILTER (WHERE at_or_below >= 0.05 * total) AS p5,
    min(value) FILTER (WHERE at_or_below >= 0.25 * total) AS p25,
    min(value) FILTER (WHERE at_or_below >= 0.50 * total) AS p50,
    min(value) FILTER (WHERE at_or_below >= 0.75 * total) AS p75,
    min(value) FILTER (WHERE at_or_below >= 0.95 * total) AS p95,
    max(value) AS max
FROM cumulative
GROUP BY population, ord, measure
ORDER BY population, ord;
