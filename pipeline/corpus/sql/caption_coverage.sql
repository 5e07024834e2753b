-- Enhanced-caption coverage of the kept samples: how many carry a caption from the optional caption stage. A sample
-- without one has only its alt text: the stage did not run, or its captioning failed (decode_error, model_error,
-- empty_caption; the caption stage's _SUCCESS and manifest.json count each). Needs tables.sql and views.sql first.
SELECT
    count(*) AS samples,
    count(enhanced_caption) AS captioned,
    count(*) - count(enhanced_caption) AS alt_text_only,
    coalesce(round(100.0 * count(enhanced_caption) / nullif(count(*), 0), 2), 0.0) AS percent
FROM shards;
