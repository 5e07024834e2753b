-- Duplicate rates: how much of the extracted text and image material repeats, and how many candidates the
-- duplicate rules removed. rate = value / base. Needs tables.sql and views.sql first.
WITH counts AS (
    SELECT
        (SELECT count(*) FROM candidates) AS candidates,
        (SELECT count(DISTINCT key) FROM candidates) AS distinct_pairs,
        (SELECT count(DISTINCT image_url) FROM candidates) AS distinct_image_urls,
        (SELECT count(DISTINCT alt_text) FROM candidates) AS distinct_alt_texts,
        (SELECT count(*) FROM rejected WHERE reason = 'duplicate_pair') AS duplicate_pair_drops,
        (SELECT count(*) FROM rejected WHERE reason = 'duplicate_image_alt') AS duplicate_image_alt_drops,
        (SELECT count(*) FROM images WHERE status = 'ok') AS fetched_ok,
        (SELECT count(DISTINCT sha256) FROM images WHERE status = 'ok') AS distinct_image_contents,
        (SELECT count(*) FROM shards) AS kept,
        (SELECT count(DISTINCT sha256) FROM shards) AS kept_distinct_contents,
        (SELECT count(DISTINCT phash) FROM shards) AS kept_distinct_phashes
)
SELECT measure, value, base, round(value / nullif(base, 0), 4) AS rate
FROM (
    SELECT 'distinct (image_url, alt_text) pairs per candidate' AS measure, distinct_pairs AS value, candidates AS base, 1 AS ord FROM counts
    UNION ALL SELECT 'distinct image URLs per candidate', distinct_image_urls, candidates, 2 FROM counts
    UNION ALL SELECT 'distinct alt texts per candidate', distinct_alt_texts, candidates, 3 FROM counts
    UNION ALL SELECT 'dropped as duplicate_pair (filter-text)', duplicate_pair_drops, candidates, 4 FROM counts
    UNION ALL SELECT 'distinct image contents (sha256) per fetched URL', distinct_image_contents, fetched_ok, 5 FROM counts
    UNION ALL SELECT 'dropped as duplicate_image_alt (filter-image)', duplicate_image_alt_drops, candidates, 6 FROM counts
    UNION ALL SELECT 'distinct image contents (sha256) per kept sample', kept_distinct_contents, kept, 7 FROM counts
    UNION ALL SELECT 'distinct perceptual hashes per kept sample', kept_distinct_phashes, kept, 8 FROM counts
)
ORDER BY ord;
