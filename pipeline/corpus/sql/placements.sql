-- Where given candidates ended (to explain the examples balance.sql lists). Needs tables.sql and views.sql first, and
--   SET VARIABLE candidate_ids = ['id1', 'id2'];
SELECT candidate_id, place
FROM placed
WHERE list_contains(getvariable('candidate_ids'), candidate_id)
ORDER BY candidate_id, place;
