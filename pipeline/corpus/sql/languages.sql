-- Language distribution (fastText top-1 of the alt text, tagged by filter-text): candidates that passed the text
-- filters and samples kept in shards/. Needs tables.sql and views.sql first.
WITH tagged AS (
    SELECT coalesce(language, 'unknown') AS language, count(*) AS text_kept FROM text_kept GROUP BY 1
),
kept AS (
    SELECT coalesce(language, 'unknown') AS language, count(*) AS kept FROM shards GROUP BY 1
)
SELECT
    language,
    coalesce(tagged.text_kept, 0) AS text_kept,
    coalesce(kept.kept, 0) AS kept,
    round(100.0 * coalesce(kept.kept, 0) / nullif(sum(coalesce(kept.kept, 0)) OVER (), 0), 2) AS kept_pct
FROM tagged
FULL OUTER JOIN kept USING (language)
ORDER BY kept DESC, text_kept DESC, language;
