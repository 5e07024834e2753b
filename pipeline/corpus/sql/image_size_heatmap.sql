-- Original width x height on a log2 grid: cell (w, h) counts fetched images (status ok, one per URL) with
-- 2^w <= width < 2^(w+1) and 2^h <= height < 2^(h+1) (sides clamped to 2^4..2^13 px), and the kept samples whose
-- image falls in it. Needs tables.sql and views.sql first.
WITH fetched AS (
    SELECT least(greatest(floor(log2(original_width)), 4), 13)::INTEGER AS width_log2,
           least(greatest(floor(log2(original_height)), 4), 13)::INTEGER AS height_log2,
           count(*) AS images
    FROM images
    WHERE status = 'ok' AND original_width > 0 AND original_height > 0
    GROUP BY width_log2, height_log2
),
kept AS (
    SELECT least(greatest(floor(log2(original_width)), 4), 13)::INTEGER AS width_log2,
           least(greatest(floor(log2(original_height)), 4), 13)::INTEGER AS height_log2,
           count(*) AS kept_samples
    FROM shards
    WHERE original_width > 0 AND original_height > 0
    GROUP BY width_log2, height_log2
)
SELECT width_log2, height_log2, coalesce(images, 0) AS images, coalesce(kept_samples, 0) AS kept_samples
FROM fetched
FULL OUTER JOIN kept USING (width_log2, height_log2)
ORDER BY width_log2, height_log2;
