-- Derived views the queries share (run after tables.sql; see its header for how to run these files).
--
-- Variables (tables.sql sets them for a finished corpus; `pipeline stats` sets them from the _SUCCESS markers):
--   held_table         the table holding the candidates that no stage dropped: 'shards' when write-shards has run,
--                      else the newest output of a finished stage ('samples', 'text_kept' or 'candidates')
--   held_place         how the funnel names them: 'kept', or 'in flight (text_kept/)' on a partial corpus
--   held_minus_stages  stages that ran after held_table was written and dropped some of its rows (fetch reads
--                      text_kept/ and writes no row per survivor, so its rejections are taken out of it)

-- Every extracted candidate: the rows of candidates/ plus the extraction-time drops, which extract records only in
-- rejected/ (a data: URL is a candidate too, see ARCHITECTURE.md). An id in both would count as extracted twice,
-- and balance.sql reports it.
CREATE OR REPLACE VIEW extracted AS
SELECT candidate_id FROM candidates
UNION ALL
SELECT candidate_id FROM rejected WHERE stage = 'extract';

-- Candidates that survived every stage run so far.
CREATE OR REPLACE VIEW held AS
SELECT survivors.candidate_id, getvariable('held_place') AS place
FROM query_table(getvariable('held_table')) AS survivors
WHERE NOT EXISTS (
    SELECT 1 FROM rejected AS dropped
    WHERE list_contains(getvariable('held_minus_stages'), dropped.stage)
      AND dropped.candidate_id = survivors.candidate_id
);

-- Where each candidate ended: held (kept or in flight), or rejected by one stage. The books balance when every
-- extracted candidate_id appears here exactly once and nothing else does.
CREATE OR REPLACE VIEW placed AS
SELECT candidate_id, place FROM held
UNION ALL
SELECT candidate_id, 'rejected by ' || stage AS place FROM rejected;
