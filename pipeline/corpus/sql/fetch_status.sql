-- How image URLs were obtained (one row per distinct URL in images/): status (ok or the error class) by source, with
-- the share of all URLs, median seconds and bytes. Needs tables.sql and views.sql first.
SELECT
    status,
    coalesce(source, '-') AS source,
    count(*) AS urls,
    round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS pct,
    round(median(fetch_seconds), 4) AS median_seconds,
    coalesce(sum(original_bytes), 0) AS original_bytes
FROM images
GROUP BY status, source
ORDER BY urls DESC, status, source;
