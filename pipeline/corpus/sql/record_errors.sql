-- WARC files and records that yielded no candidate (truncated files, malformed records, undecodable pages), by stage
-- and reason, with one example. Needs tables.sql and views.sql first.
SELECT
    stage,
    reason,
    count(*) AS records,
    count(DISTINCT warc_file) AS warc_files,
    min(warc_file) AS example_file,
    min(detail) AS example_detail
FROM record_errors
GROUP BY stage, reason
ORDER BY records DESC, stage, reason;
