-- Original width x height of fetched images (status ok) on a log2 grid: cell (w, h) counts images with
-- 2^w <= width < 2^(w+1) and 2^h <= height < 2^(h+1) (sides clamped to 2^4..2^13 px), and how many of them ended
-- kept. Needs tables.sql and views.sql first.
WITH fetched AS (
    SELECT image_url,
           least(greatest(floor(log2(original_width)), 4), 13)::INTEGER AS width_log2,
           least(greatest(floor(log2(original_height)), 4), 13)::INTEGER AS height_log2
    FROM images
    WHERE status = 'ok' AND original_width > 0 AND original_height > 0
),
kept_urls AS (
    SELECT DISTINCT image_url FROM shards
)
SELECT width_log2, height_log2, count(*) AS images, count(kept_urls.image_url) AS kept_images
FROM fetched
LEFT JOIN kept_urls USING (image_url)
GROUP BY width_log2, height_log2
ORDER BY width_log2, height_log2;
