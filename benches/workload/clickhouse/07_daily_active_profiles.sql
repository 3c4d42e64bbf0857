-- Daily active profiles on the web.
SELECT date_trunc('day', ts) AS day, count(DISTINCT profile_id) AS active
FROM web_events WHERE profile_id IS NOT NULL
GROUP BY 1 ORDER BY 1
