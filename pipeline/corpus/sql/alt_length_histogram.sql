-- Histogram of alt-text length in words (1..40, then 41 = "more than 40"; alt texts are whitespace-collapsed, so
-- words = spaces + 1): extracted candidates against kept samples, so ALIGN's 3..20 unigram window shows as the gap
-- between the two. Needs tables.sql and views.sql first.
WITH extracted_words AS (
    SELECT least(length(alt_text) - length(replace(alt_text, ' ', '')) + 1, 41) AS words, count(*) AS extracted
    FROM candidates GROUP BY 1
),
kept_words AS (
    SELECT least(length(alt_text) - length(replace(alt_text, ' ', '')) + 1, 41) AS words, count(*) AS kept
    FROM shards GROUP BY 1
)
SELECT words, coalesce(extracted, 0) AS extracted, coalesce(kept, 0) AS kept
FROM extracted_words
FULL OUTER JOIN kept_words USING (words)
ORDER BY words;
