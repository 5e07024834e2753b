-- Top 25 page hosts and top 25 image hosts by extracted candidates, with how many of their candidates were kept.
-- Needs tables.sql and views.sql first.
WITH page_extracted AS (
    SELECT coalesce(page_host, '(none)') AS host, count(*) AS extracted FROM candidates GROUP BY 1
),
page_kept AS (
    SELECT coalesce(page_host, '(none)') AS host, count(*) AS kept FROM shards GROUP BY 1
),
image_extracted AS (
    SELECT coalesce(image_host, '(none)') AS host, count(*) AS extracted FROM candidates GROUP BY 1
),
image_kept AS (
    SELECT coalesce(image_host, '(none)') AS host, count(*) AS kept FROM shards GROUP BY 1
),
ranked AS (
    SELECT 'page' AS host_kind, host, extracted, coalesce(kept, 0) AS kept,
           row_number() OVER (ORDER BY extracted DESC, host) AS rank
    FROM page_extracted LEFT JOIN page_kept USING (host)
    UNION ALL
    SELECT 'image' AS host_kind, host, extracted, coalesce(kept, 0) AS kept,
           row_number() OVER (ORDER BY extracted DESC, host) AS rank
    FROM image_extracted LEFT JOIN image_kept USING (host)
)
SELECT host_kind, rank, host, extracted, kept
FROM ranked
WHERE rank <= 25
ORDER BY host_kind DESC, rank;
