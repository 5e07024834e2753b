-- Aspect ratio (long side / short side) of fetched images (status ok) and kept samples, in buckets; ALIGN keeps
-- ratios below 3. Also the orientation split. Needs tables.sql and views.sql first.
WITH ratios AS (
    SELECT 'fetched' AS population, original_width AS width, original_height AS height,
           greatest(original_width, original_height)::DOUBLE / least(original_width, original_height) AS ratio
    FROM images WHERE status = 'ok' AND original_width > 0 AND original_height > 0
    UNION ALL
    SELECT 'kept', original_width, original_height,
           greatest(original_width, original_height)::DOUBLE / least(original_width, original_height)
    FROM shards WHERE original_width > 0 AND original_height > 0
)
SELECT
    population,
    CASE
        WHEN ratio < 1.25 THEN '1.00-1.25'
        WHEN ratio < 1.5 THEN '1.25-1.50'
        WHEN ratio < 2 THEN '1.50-2.00'
        WHEN ratio < 2.5 THEN '2.00-2.50'
        WHEN ratio < 3 THEN '2.50-3.00'
        WHEN ratio < 4 THEN '3.00-4.00'
        WHEN ratio < 6 THEN '4.00-6.00'
        ELSE '6.00+'
    END AS ratio_bucket,
    count(*) AS images,
    count(*) FILTER (WHERE width > height) AS landscape,
    count(*) FILTER (WHERE width < height) AS portrait,
    count(*) FILTER (WHERE width = height) AS square
FROM ratios
GROUP BY population, ratio_bucket
ORDER BY population, ratio_bucket;
