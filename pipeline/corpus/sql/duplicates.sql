-- Duplicate rates: how much of the material repeats, and how many candidates the duplicate rules removed.
-- rate = value / base. The drops and the per-URL counts are exact; distinct alt texts and image contents are
-- HyperLogLog estimates (approx_count_distinct, about 1-2% error), which keeps this one pass over the tables at
-- any scale. Needs tables.sql and views.sql first.
WITH counts AS (
    SELECT
        (SELECT count(*) FROM candidates) AS candidates,
        (SELECT approx_count_distinct(alt_text) FROM candidates) AS distinct_alt_texts,
        (SELECT count(*) FILTER (WHERE reason = 'duplicate_pair') FROM rejected) AS duplicate_pair_drops,
        (SELECT count(*) FILTER (WHERE reason = 'duplicate_image_alt') FROM rejected) AS duplicate_image_alt_drops,
        (SELECT count(*) FROM text_kept) AS text_kept,
        (SELECT count(*) FROM images) AS image_urls,
        (SELECT count(*) FROM images WHERE status = 'ok') AS fetched_ok,
        (SELECT approx_count_distinct(sha256) FROM images WHERE status = 'ok') AS distinct_image_contents,
        (SELECT count(*) FROM shards) AS kept,
        (SELECT approx_count_distinct(sha256) FROM shards) AS kept_distinct_contents
)
SELECT measure, value, base, round(value / nullif(base, 0), 4) AS rate
FROM (
    SELECT 'dropped as duplicate_pair (filter-text)' AS measure, duplicate_pair_drops AS value, candidates AS base, 1 AS ord FROM counts
    UNION ALL SELECT 'distinct alt texts per candidate (approx.)', distinct_alt_texts, candidates, 2 FROM counts
    UNION ALL SELECT 'distinct image URLs per text-kept candidate', image_urls, text_kept, 3 FROM counts
    UNION ALL SELECT 'distinct image contents per fetched URL (approx.)', distinct_image_contents, fetched_ok, 4 FROM counts
    UNION ALL SELECT 'dropped as duplicate_image_alt (filter-image)', duplicate_image_alt_drops, candidates, 5 FROM counts
    UNION ALL SELECT 'distinct image contents per kept sample (approx.)', kept_distinct_contents, kept, 6 FROM counts
)
ORDER BY ord;
